//! Counts starts since power-up in a RAM word that the startup code leaves alone (`.uninit`), so it
//! survives a watchdog or software reset. A real board that must count across power cycles keeps it in
//! flash instead.

use core::mem::MaybeUninit;

const MAGIC: u32 = 0x1F0B_0075;

#[unsafe(link_section = ".uninit.IF_BOOTS")]
static mut KEPT: MaybeUninit<[u32; 2]> = MaybeUninit::uninit();

/// This start's number: 1 after power-up, one more after each reset.
pub fn count() -> u32 {
    let p = core::ptr::addr_of_mut!(KEPT).cast::<u32>();
    // SAFETY: called once, before interrupts are enabled; the two words are plain RAM owned by this
    // module. After power-up they hold whatever the RAM held, which the magic word tells apart.
    unsafe {
        let (magic, count) = (p.read_volatile(), p.add(1).read_volatile());
        let next = if magic == MAGIC { count.wrapping_add(1).max(1) } else { 1 };
        p.write_volatile(MAGIC);
        p.add(1).write_volatile(next);
        next
    }
}
