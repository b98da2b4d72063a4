//! Protocol benchmarks: signing and verification (single, strict, batch), frame encode/decode, and the
//! RFC 6962 head of a million leaves. Results and the machine they ran on: docs/BENCHMARKS.md.
//!
//! Run: `cargo bench -p if-protocol --bench protocol`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
use if_protocol::envelope::{ArgValue, Args, Audience, EnvelopeBody, Hazards, Nonce, ProtocolVersion};
use if_protocol::frame::{self, SignedFrame};
use if_protocol::witness::merkle;
use if_protocol::{attest, batch, keys};
use uuid::Uuid;

fn body(seq: u64) -> EnvelopeBody {
    let mut args = Args::new();
    let _ = args.insert("Input", ArgValue::Int(3));
    EnvelopeBody {
        version: ProtocolVersion::CURRENT,
        id: Uuid::from_bytes([7; 16]),
        audience: Audience::agent("studio-a", "edge-1").unwrap_or(Audience::Fleet),
        sender: "desk-a".try_into().unwrap_or_default(),
        seq,
        nonce: Nonce([9; 16]),
        issued_at_ms: 1_790_000_000_000,
        ttl_s: 60,
        scope: "studio:control".try_into().unwrap_or_default(),
        hazards: Hazards::ON_AIR,
        capability: "if://capability/vmix.switcher".try_into().unwrap_or_default(),
        action: "cut".try_into().unwrap_or_default(),
        args,
        why: "cut to camera 3".try_into().unwrap_or_default(),
        trace: Uuid::from_bytes([5; 16]),
    }
}

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn signatures(c: &mut Criterion) {
    let k = key(1);
    let vk = k.verifying_key();
    let msg = frame::encode_body(&body(1)).expect("encode");
    let sig = k.sign(&msg);
    let mut g = c.benchmark_group("ed25519");
    g.bench_function("sign", |b| b.iter(|| k.sign(black_box(&msg))));
    g.bench_function("verify", |b| b.iter(|| vk.verify(black_box(&msg), black_box(&sig))));
    g.bench_function("verify_strict", |b| b.iter(|| vk.verify_strict(black_box(&msg), black_box(&sig))));
    g.finish();

    let mut g = c.benchmark_group("frame_batch_verify");
    for n in [64usize, 256] {
        let keys: Vec<SigningKey> = (0..n).map(|i| key((i % 250) as u8 + 1)).collect();
        let frames: Vec<_> =
            keys.iter().enumerate().map(|(i, k)| frame::sign_envelope(k, &body(i as u64)).expect("sign")).collect();
        let items: Vec<_> =
            frames.iter().zip(&keys).map(|(f, k)| (SignedFrame::parse(f).expect("parse"), k.verifying_key())).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("batch_{n}"), |b| b.iter(|| batch::verify_frames(black_box(&items))));
        g.bench_function(format!("one_by_one_{n}"), |b| {
            b.iter(|| items.iter().map(|(f, k)| f.verify(k).is_ok()).filter(|ok| *ok).count())
        });
    }
    g.finish();
}

fn frames(c: &mut Criterion) {
    let k = key(1);
    let vk = k.verifying_key();
    let b0 = body(1);
    let f = frame::sign_envelope(&k, &b0).expect("sign");
    let id = keys::key_id(&vk);
    let mut g = c.benchmark_group("frame");
    g.bench_function("encode_body", |b| b.iter(|| frame::encode_body(black_box(&b0))));
    g.bench_function("sign_envelope", |b| b.iter(|| frame::sign_envelope(&k, black_box(&b0))));
    g.bench_function("decode_verified", |b| {
        let v = SignedFrame::parse(&f).and_then(|s| s.verify(&vk)).expect("verify");
        b.iter(|| black_box(v).decode())
    });
    g.bench_function("open", |b| b.iter(|| frame::open(black_box(&f), |asked| (*asked == id).then_some(vk))));
    g.finish();
}

/// What signing every answer costs the agent, and checking one costs `ifctl`: a ping's reply (about 400 B).
fn signed_answers(c: &mut Criterion) {
    let k = key(3);
    let vk = k.verifying_key();
    let request = [7u8; 32];
    let reply = format!(
        "{{\"id\":\"{}\",\"sender\":\"desk-a\",\"seq\":1796130746949000,\"ok\":true,\"result\":{{\"pong\":true,\"health\":{{\"agent\":\"studio-a/edge-1\",\"boot\":3,\"session\":1,\"log_size\":120345,\"executed\":9981,\"rejected\":12,\"uptime_s\":8812,\"instance\":\"674356eed565e9c3\",\"at_ms\":1796130746949}}}},\"witness\":120344}}",
        Uuid::from_bytes([7; 16])
    )
    .into_bytes();
    let signed = attest::sign(&k, attest::REPLY_DOMAIN, &request, &reply).unwrap_or_default();
    let mut g = c.benchmark_group("attest");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_reply", |b| b.iter(|| attest::sign(&k, attest::REPLY_DOMAIN, &request, black_box(&reply))));
    g.bench_function("verify_reply", |b| {
        b.iter(|| attest::verify(&vk, attest::REPLY_DOMAIN, &request, black_box(&signed)))
    });
    g.finish();
}

fn merkle_root(c: &mut Criterion) {
    let leaves: Vec<_> = (0u32..1_000_000).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect();
    let mut g = c.benchmark_group("rfc6962");
    g.sample_size(10);
    g.throughput(Throughput::Elements(leaves.len() as u64));
    g.bench_function("root_1m_leaves", |b| b.iter_batched(|| leaves.clone(), merkle::root, BatchSize::LargeInput));
    g.finish();
}

criterion_group!(benches, signatures, frames, signed_answers, merkle_root);
criterion_main!(benches);
