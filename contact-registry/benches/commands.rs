//! Each command at 1,000 and at 100,000 contacts and lists: the time per command must not
//! grow with the size of the registry (except `query-lists`, whose answer does).
//!
//! State: `n` contacts `c{i}` each in 3 lists (`l{i}`, `l{i+1}`, `l{i+2}`), so every list has
//! 3 members, plus `n` contacts `x{i}` in no list. Each measured command is prepared and undone
//! outside the timed section, a chunk of at most [`chunk_len`] at a time, so the state stays the same
//! size while it is measured.
//!
//! `cargo bench -p contact-registry -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use contact_proto::{Command, ContactName, ListName};
use contact_registry::{Limits, Registry};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const SIZES: [usize; 2] = [1_000, 100_000];

/// How many distinct contacts and lists one timed chunk touches: the same at both sizes, so
/// that the figures compare the algorithms rather than the CPU caches (a chunk that touches
/// 100,000 lists misses the cache on every command; see the crate README for both figures).
/// `CHUNK=0` makes a chunk as large as the registry.
fn chunk_len(n: usize) -> usize {
    match std::env::var("CHUNK")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        Some(0) => n,
        Some(c) => c.min(n),
        None => n.min(1_000),
    }
}

fn contact(prefix: &str, i: usize) -> ContactName {
    format!("{prefix}{i}").parse().unwrap()
}

fn list(i: usize) -> ListName {
    format!("l{i}").parse().unwrap()
}

fn ip(i: usize) -> IpAddr {
    IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn setup(n: usize) -> Registry {
    let mut r = Registry::new(Limits::UNLIMITED);
    for i in 0..n {
        r.register(contact("c", i), ip(i), 22000, 0);
        r.register(contact("x", i), ip(i), 22002, 0);
        r.create(list(i));
    }
    for i in 0..n {
        for k in 0..3 {
            r.join(&list((i + k) % n), &contact("c", i));
        }
    }
    r
}

/// Times `op` on chunks of at most `n` inputs: `prepare` and `undo` run untimed.
fn chunked<T>(
    r: &mut Registry,
    n: usize,
    iters: u64,
    mut prepare: impl FnMut(&mut Registry, usize) -> T,
    mut op: impl FnMut(&mut Registry, T),
    mut undo: impl FnMut(&mut Registry, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let chunk = (iters - done).min(chunk_len(n) as u64) as usize;
        let inputs: Vec<T> = (0..chunk).map(|k| prepare(r, k)).collect();
        let start = Instant::now();
        for input in inputs {
            op(r, input);
        }
        total += start.elapsed();
        for k in 0..chunk {
            undo(r, k);
        }
        done += chunk as u64;
    }
    total
}

fn apply(r: &mut Registry, cmd: Command) {
    black_box(r.apply(cmd));
}

fn commands(c: &mut Criterion) {
    for n in SIZES {
        let mut r = setup(n);
        let mut group = c.benchmark_group("command");
        group.sample_size(20);

        group.bench_function(BenchmarkId::new("register", n), |b| {
            b.iter_custom(|iters| {
                chunked(
                    &mut r,
                    n,
                    iters,
                    |_, k| Command::Register {
                        name: contact("new", k),
                        ip: ip(k),
                        port: 22000,
                    },
                    apply,
                    |r, k| {
                        r.exit(&contact("new", k));
                    },
                )
            })
        });

        group.bench_function(BenchmarkId::new("exit (in 3 lists)", n), |b| {
            b.iter_custom(|iters| {
                chunked(
                    &mut r,
                    n,
                    iters,
                    |r, k| {
                        r.register(contact("new", k), ip(k), 22000, 0);
                        for j in 0..3 {
                            r.join(&list((k * 7 + j * 11) % n), &contact("new", k));
                        }
                        Command::Exit {
                            name: contact("new", k),
                        }
                    },
                    apply,
                    |_, _| {},
                )
            })
        });

        group.bench_function(BenchmarkId::new("join", n), |b| {
            b.iter_custom(|iters| {
                chunked(
                    &mut r,
                    n,
                    iters,
                    |_, k| Command::Join {
                        list: list(k),
                        name: contact("x", k),
                    },
                    apply,
                    |r, k| {
                        r.leave(&list(k), &contact("x", k));
                    },
                )
            })
        });

        group.bench_function(BenchmarkId::new("leave", n), |b| {
            b.iter_custom(|iters| {
                chunked(
                    &mut r,
                    n,
                    iters,
                    |r, k| {
                        r.join(&list(k), &contact("x", k));
                        Command::Leave {
                            list: list(k),
                            name: contact("x", k),
                        }
                    },
                    apply,
                    |_, _| {},
                )
            })
        });

        group.bench_function(BenchmarkId::new("im-start", n), |b| {
            b.iter_custom(|iters| {
                chunked(
                    &mut r,
                    n,
                    iters,
                    |_, k| Command::ImStart {
                        list: list(k),
                        name: contact("c", k),
                    },
                    apply,
                    |r, k| {
                        r.im_complete(&list(k), &contact("c", k));
                    },
                )
            })
        });

        group.bench_function(BenchmarkId::new("im-complete", n), |b| {
            b.iter_custom(|iters| {
                chunked(
                    &mut r,
                    n,
                    iters,
                    |r, k| {
                        let _ = r.im_start(&list(k), &contact("c", k));
                        Command::ImComplete {
                            list: list(k),
                            name: contact("c", k),
                        }
                    },
                    apply,
                    |_, _| {},
                )
            })
        });

        group.bench_function(BenchmarkId::new("create", n), |b| {
            b.iter_custom(|iters| {
                // Lists cannot be deleted: measure on a copy, one per sample, so that the
                // copy's vectors and tables grow (amortized) as they would in a server.
                let mut copy = r.clone();
                let cmds: Vec<Command> = (0..iters)
                    .map(|k| Command::Create {
                        list: format!("new{k}").parse().unwrap(),
                    })
                    .collect();
                let start = Instant::now();
                for cmd in cmds {
                    apply(&mut copy, cmd);
                }
                start.elapsed()
            })
        });

        // Failing checks cost the same lookups.
        group.bench_function(BenchmarkId::new("join (461 already a member)", n), |b| {
            let cmd = Command::Join {
                list: list(n / 2),
                name: contact("c", n / 2),
            };
            b.iter(|| black_box(r.apply(cmd.clone())))
        });

        // O(lists): the answer holds every list name.
        group.bench_function(BenchmarkId::new("query-lists", n), |b| {
            b.iter(|| black_box(r.apply(Command::QueryLists)))
        });
        group.finish();
        r.assert_consistent();
        assert_eq!(r.num_contacts(), 2 * n);
    }
}

criterion_group!(benches, commands);
criterion_main!(benches);
