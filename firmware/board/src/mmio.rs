//! Reading and writing the memory-mapped registers of the board's peripherals.

/// Reads the 32-bit register at `addr`.
pub fn read(addr: usize) -> u32 {
    // SAFETY: called only with the addresses of the MPS2 AN386 peripheral registers in this crate,
    // which are always mapped, aligned and readable.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes the 32-bit register at `addr`.
pub fn write(addr: usize, value: u32) {
    // SAFETY: as for `read`; these registers hold no Rust data, so a write aliases nothing.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}
