//! `media`'s `Demux` under a sequence of peer insertions, removals and datagrams from a
//! small pool of addresses. After every step: its maps agree (`assert_consistent`), and,
//! probing every address with an RTP-looking datagram, an address only ever starts routing
//! to a peer after a datagram from it that proves that peer's ICE password (checked here
//! against the password the target gave the peer, with `media::stun::integrity_matches`
//! only as the HMAC), and stops only when its peer is removed or it moves to another.

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use floorcast_fuzz::{binding_request, sign};
use libfuzzer_sys::fuzz_target;
use media::PeerId;
use media::fuzzing::{Demux, Route};
use media::stun::{integrity_matches, local_ufrag};

/// Addresses in the pool: a few hosts and ports, IPv4 and IPv6.
const ADDRS: u8 = 24;
/// An address's peer is asked with this: not STUN, so routing by address only.
const RTP: &[u8] = b"\x80\x60\x00\x01rtp-ish";

/// One step, decoded from bytes (not `arbitrary`, so seeds can be written by hand):
/// `0` insert, `1 n` remove, `2 from to key…` STUN, `3 from len_hi len_lo data…` raw;
/// the opcode is taken modulo 4.
#[derive(Debug)]
enum Op {
    /// A new peer: a fresh id and a fresh ufrag, as str0m makes them (16 random characters:
    /// two peers never share one).
    Insert,
    /// Removes the n-th peer inserted (perhaps removed already, or never inserted).
    Remove(u8),
    /// A Binding request from an address, naming the ufrag of the n-th peer (or one nobody
    /// has), signed with some key or not at all.
    Stun { from: u8, to: u8, key: Key },
    /// Anything else from an address.
    Raw { from: u8, data: Vec<u8> },
}

/// `0` none, `1` the named peer's password, `2 n` the n-th peer's, `3 len bytes…` those bytes.
#[derive(Debug)]
enum Key {
    None,
    Own,
    Of(u8),
    Bytes(Vec<u8>),
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head.to_vec()
    }

    fn op(&mut self) -> Option<Op> {
        Some(match self.byte()? % 4 {
            0 => Op::Insert,
            1 => Op::Remove(self.byte()?),
            2 => Op::Stun {
                from: self.byte()?,
                to: self.byte()?,
                key: match self.byte()? % 4 {
                    0 => Key::None,
                    1 => Key::Own,
                    2 => Key::Of(self.byte()?),
                    _ => {
                        let n = self.byte()?;
                        Key::Bytes(self.take(usize::from(n)))
                    }
                },
            },
            _ => {
                let from = self.byte()?;
                let len = u16::from_be_bytes([self.byte()?, self.byte()?]);
                Op::Raw {
                    from,
                    data: self.take(usize::from(len)),
                }
            }
        })
    }
}

struct Peer {
    id: PeerId,
    ufrag: String,
    pwd: String,
    live: bool,
}

fn addr(i: u8) -> SocketAddr {
    let i = i % ADDRS;
    let port = 40_000 + u16::from(i % 3);
    if i < 12 {
        (Ipv4Addr::new(192, 0, 2, i / 3), port).into()
    } else {
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i / 3)),
            port,
        )
            .into()
    }
}

fn probe(d: &mut Demux) -> Vec<Option<PeerId>> {
    (0..ADDRS)
        .map(|i| match d.route(addr(i), RTP, 0) {
            Route::Peer(p) => Some(p),
            Route::Unknown => None,
            Route::Unauthenticated => panic!("a datagram that is not STUN is unauthenticated"),
            Route::Shard(s) => panic!("a one-shard demux passed a datagram to shard {s}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut d = Demux::default();
    let mut peers: Vec<Peer> = Vec::new();
    let mut input = Bytes(data);
    for _ in 0..200 {
        let Some(op) = input.op() else {
            break;
        };
        let before = probe(&mut d);
        let sent = match op {
            Op::Insert => {
                let n = peers.len() as u64;
                let peer = Peer {
                    id: PeerId(1000 + n),
                    ufrag: format!("uf{n:02}"),
                    pwd: format!("pw-{n:02}-0123456789abcdef"),
                    live: true,
                };
                d.insert(peer.id, peer.ufrag.clone(), peer.pwd.clone());
                peers.push(peer);
                None
            }
            Op::Remove(n) => {
                if let Some(p) = peers.get_mut(usize::from(n)) {
                    d.remove(p.id);
                    p.live = false;
                    let gone = p.id;
                    let after = probe(&mut d);
                    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                        let expected = if *b == Some(gone) { None } else { *b };
                        assert_eq!(*a, expected, "{} after removing {gone}", addr(i as u8));
                    }
                }
                None
            }
            Op::Stun { from, to, key } => {
                let named = peers.get(usize::from(to));
                let ufrag = named.map_or_else(|| format!("nobody{to}"), |p| p.ufrag.clone());
                let msg = binding_request(format!("{ufrag}:remote").as_bytes(), [to; 12]);
                let key: Option<Vec<u8>> = match key {
                    Key::None => None,
                    Key::Own => named.map(|p| p.pwd.clone().into_bytes()),
                    Key::Of(n) => peers
                        .get(usize::from(n))
                        .map(|p| p.pwd.clone().into_bytes()),
                    Key::Bytes(b) => Some(b),
                };
                let msg = match key {
                    Some(k) => sign(&msg, &k).expect("a well-formed request"),
                    None => msg,
                };
                Some((from, msg))
            }
            Op::Raw { from, data } => Some((from, data)),
        };
        let Some((from, datagram)) = sent else {
            d.assert_consistent();
            continue;
        };

        let route = d.route(addr(from), &datagram, 0);
        d.assert_consistent();
        let after = probe(&mut d);
        let ufrag = local_ufrag(&datagram);
        let named = ufrag.and_then(|u| peers.iter().find(|p| p.live && p.ufrag == u));
        let proven = named.is_some_and(|p| integrity_matches(&datagram, p.pwd.as_bytes()));
        let from_i = usize::from(from % ADDRS);

        match route {
            // One shard: a ufrag naming shard n > 0 is nobody's.
            Route::Shard(s) => panic!("a one-shard demux passed a datagram to shard {s}"),
            Route::Peer(p) => {
                assert!(peers.iter().any(|q| q.live && q.id == p), "{p} is not live");
                match named {
                    Some(n) => assert_eq!(n.id, p, "a request naming {} went to {p}", n.ufrag),
                    None => {
                        assert!(ufrag.is_none(), "a request naming no live peer went to {p}");
                        assert_eq!(
                            before[from_i],
                            Some(p),
                            "a datagram from an address of another peer"
                        );
                    }
                }
            }
            Route::Unknown => {
                assert!(
                    named.is_none(),
                    "a request naming a live peer was not routed"
                );
                assert!(ufrag.is_some() || before[from_i].is_none());
            }
            Route::Unauthenticated => {
                assert!(named.is_some() && !proven, "a proven request was refused");
                assert_ne!(
                    before[from_i],
                    named.map(|n| n.id),
                    "the known path was refused"
                );
            }
        }
        if let Some(n) = named.filter(|_| proven) {
            assert_eq!(route, Route::Peer(n.id), "a request proving the password");
            let held = before.iter().filter(|b| **b == Some(n.id)).count();
            if held < 8 || before[from_i] == Some(n.id) {
                assert_eq!(after[from_i], Some(n.id), "the address was learnt");
            }
        }
        // No other address changes, and this one only to the peer whose password it proved.
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            if i != from_i || b == a {
                assert_eq!(
                    b,
                    a,
                    "{} changed by a datagram from {}",
                    addr(i as u8),
                    addr(from)
                );
                continue;
            }
            assert!(
                proven,
                "{} moved from {b:?} to {a:?} without proof",
                addr(from)
            );
            let n = named.expect("proven names a peer");
            assert!(
                *a == Some(n.id) || a.is_none(),
                "moved to {a:?}, not to {}",
                n.id
            );
        }
    }
});
