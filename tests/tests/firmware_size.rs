//! The rack node's firmware fits its budget: 64 KB of flash and 16 KB of static RAM, read from the
//! release image's section table with binutils' `size`.

use std::collections::BTreeMap;
use std::process::Command;

const FLASH_BUDGET: u64 = 64 * 1024;
const RAM_BUDGET: u64 = 16 * 1024;

fn sections() -> BTreeMap<String, u64> {
    let image = if_tests::rack::firmware();
    let out = Command::new("size").args(["-A", "-d"]).arg(&image).output().expect("binutils' size runs");
    assert!(out.status.success(), "size: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("text");
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, size) = (w.next()?, w.next()?.parse().ok()?);
            name.starts_with('.').then(|| (name.to_string(), size))
        })
        .collect()
}

#[test]
fn the_firmware_fits_64_kb_of_flash_and_16_kb_of_static_ram() {
    let s = sections();
    let of = |names: &[&str]| names.iter().map(|n| s.get(*n).copied().unwrap_or(0)).sum::<u64>();
    assert!(s.get(".text").is_some_and(|t| *t > 1024), "a real image has code: {s:?}");
    // Flash holds the code, the constants and the initial values of .data.
    let flash = of(&[".vector_table", ".text", ".rodata", ".data"]);
    let ram = of(&[".data", ".bss", ".uninit"]);
    println!("flash {flash} bytes, static RAM {ram} bytes");
    assert!(flash <= FLASH_BUDGET, "flash {flash} > {FLASH_BUDGET}: {s:?}");
    assert!(ram <= RAM_BUDGET, "static RAM {ram} > {RAM_BUDGET}: {s:?}");
}
