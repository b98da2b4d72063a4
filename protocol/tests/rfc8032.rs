//! RFC 8032 section 7.1 Ed25519 test vectors (TEST 1, 2, 3 and SHA(abc)) through the project's signing
//! and strict verification functions. An empty domain makes `keys::sign` plain Ed25519.

use ed25519_dalek::{Signature, SigningKey};
use if_protocol::ErrorCode;
use if_protocol::keys;

struct Vector {
    name: &'static str,
    secret: &'static str,
    public: &'static str,
    message: &'static str,
    signature: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "TEST 1",
        secret: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        public: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        message: "",
        signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    },
    Vector {
        name: "TEST 2",
        secret: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        public: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        message: "72",
        signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    },
    Vector {
        name: "TEST 3",
        secret: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        public: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        message: "af82",
        signature: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    },
    Vector {
        name: "TEST SHA(abc)",
        secret: "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        public: "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        message: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        signature: "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    },
];

fn bytes<const N: usize>(h: &str) -> [u8; N] {
    hex::decode(h).expect("hex").try_into().expect("length")
}

#[test]
fn rfc8032_vectors_sign_and_verify() {
    for v in VECTORS {
        let key = SigningKey::from_bytes(&bytes::<32>(v.secret));
        assert_eq!(hex::encode(key.verifying_key().as_bytes()), v.public, "{}: public key", v.name);
        let message = hex::decode(v.message).expect("hex");
        let sig = keys::sign(&key, b"", &message).expect("sign");
        assert_eq!(hex::encode(sig.to_bytes()), v.signature, "{}: signature", v.name);

        let public = keys::verifying_key(&bytes::<32>(v.public)).expect("valid key");
        let expected = Signature::from_bytes(&bytes::<64>(v.signature));
        keys::verify(&public, b"", &message, &expected).expect("verifies");
        keys::verify_raw(&public, &message, &expected).expect("verifies raw");

        let mut tampered = message.clone();
        tampered.push(0);
        let e = keys::verify(&public, b"", &tampered, &expected).expect_err("longer message");
        assert_eq!(e.code(), ErrorCode::InvalidSignature);
        let e = keys::verify(&public, b"IF.connect/v2.2\0", &message, &expected).expect_err("other domain");
        assert_eq!(e.code(), ErrorCode::InvalidSignature, "{}: a domain changes what is signed", v.name);
    }
}

#[test]
fn weak_and_malformed_keys_are_refused() {
    // The identity point (a small-order key) and a wrong length.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(keys::verifying_key(&identity).expect_err("weak").code(), ErrorCode::UnknownKey);
    assert_eq!(keys::verifying_key(&[1u8; 31]).expect_err("short").code(), ErrorCode::UnknownKey);
}
