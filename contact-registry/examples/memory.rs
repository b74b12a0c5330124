//! Measures the heap bytes per contact with a counting allocator.
//!
//! `cargo run --release -p contact-registry --example memory`
//!
//! Builds issue 6's target state, 1,000,000 contacts and 100,000 lists of 10 members, and a
//! smaller one, and prints the live heap bytes divided by the number of contacts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use contact_proto::{ContactName, ListName};
use contact_registry::{Limits, Registry};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn build(contacts: usize, lists: usize, members: usize) -> Registry {
    let mut r = Registry::new(Limits::UNLIMITED);
    for i in 0..contacts {
        let name: ContactName = format!("contact{i}").parse().unwrap();
        let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        r.register(name, ip, 22000, 0);
    }
    for l in 0..lists {
        let list: ListName = format!("list{l}").parse().unwrap();
        r.create(list.clone());
        for m in 0..members {
            let c = (l * members + m) % contacts;
            r.join(&list, &format!("contact{c}").parse().unwrap());
        }
    }
    r
}

fn main() {
    for (contacts, lists, members) in [
        (1_000, 1_000, 3),
        (100_000, 100_000, 3),
        (1_000_000, 100_000, 10),
    ] {
        let before = LIVE.load(Ordering::Relaxed);
        let r = build(contacts, lists, members);
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "{contacts} contacts, {lists} lists of {members} members: {} MB live heap, {} bytes per contact",
            bytes / 1_000_000,
            bytes / contacts
        );
        drop(r);
    }
}
