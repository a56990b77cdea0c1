//! Outgoing datagrams gathered and handed to the kernel with one `sendmmsg` call per batch,
//! with a viewer's run of equal-size datagrams sent as one UDP GSO message.
//!
//! Fan-out is dominated by the kernel's per-datagram cost (DESIGN.md, performance budget).
//! One system call for many datagrams removes the per-call overhead; GSO (`UDP_SEGMENT`)
//! also removes most of the per-datagram work below the socket, because the kernel walks
//! its UDP/IP/route path once per message and cuts the segments at the end. A viewer's
//! packets of one turn come out of str0m one after the other (see `Sfu::handle_timeout`),
//! so the frame a viewer gets in a turn is typically one message.
//!
//! The buffers are str0m's own (moved in, never copied) and every array here is allocated
//! once. Where the kernel lacks GSO (before Linux 4.18) or a device refuses it (`EIO`), the
//! batch falls back to one datagram per message for good, logged once.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;
use tracing::warn;

use crate::stats::MediaStats;

/// Messages per `sendmmsg` call.
pub(crate) const BATCH: usize = 64;
/// Datagrams held before a flush, whatever the grouping.
const MAX_DATAGRAMS: usize = 256;
/// Segments of one GSO message: the kernel's `UDP_MAX_SEGMENTS` (64; 128 since Linux 6.x).
const MAX_SEGMENTS: usize = 64;
/// Bytes of one GSO message: one UDP datagram's payload, less room for IPv6's larger header.
const MAX_GSO_BYTES: usize = 65_000;
/// Sent buffers kept for reuse (see [`SendBatch::buffer`]): one batch's worth.
const MAX_FREE: usize = MAX_DATAGRAMS;
/// A buffer smaller than this (a STUN answer's) is not worth keeping for RTP.
const MIN_REUSED_CAPACITY: usize = BUFFER_CAPACITY;
/// What a new buffer gets: a full-size datagram, so every buffer we make can be reused.
const BUFFER_CAPACITY: usize = 1_500;

/// One message: datagrams `first..first + segments` of the batch, to one destination.
struct Message {
    to: SocketAddr,
    dest: SockAddr,
    first: usize,
    segments: usize,
    /// The size of every segment but the last, which may be shorter (and then ends the run).
    segment_len: usize,
    bytes: usize,
    ended: bool,
}

/// Room for one `cmsghdr` carrying a `u16` (`CMSG_SPACE(2)` is 24 on 64-bit Linux), aligned
/// as the kernel reads it.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct SegmentCmsg([u8; 32]);

pub(crate) struct SendBatch {
    gso: bool,
    messages: Vec<Message>,
    datagrams: Vec<Vec<u8>>,
    /// Sent datagrams' buffers, emptied, for the next ones we build ourselves.
    free: Vec<Vec<u8>>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    cmsgs: Vec<SegmentCmsg>,
}

impl SendBatch {
    /// `gso`: group equal-size datagrams to one destination into one message, where the
    /// kernel supports it.
    pub fn new(gso: bool) -> Self {
        let gso = gso && gso_supported();
        Self {
            gso,
            messages: Vec::with_capacity(BATCH),
            datagrams: Vec::with_capacity(MAX_DATAGRAMS),
            free: Vec::with_capacity(MAX_FREE),
            iovecs: Vec::with_capacity(MAX_DATAGRAMS),
            headers: Vec::with_capacity(BATCH),
            cmsgs: vec![SegmentCmsg([0; 32]); BATCH],
        }
    }

    pub fn gso(&self) -> bool {
        self.gso
    }

    /// An empty buffer for the next datagram, recycled from one already sent when there is
    /// one: the fan-out then allocates nothing per packet.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY))
    }

    pub fn push(&mut self, fd: RawFd, to: SocketAddr, datagram: Vec<u8>, stats: &MediaStats) {
        let len = datagram.len();
        let joins = self.gso
            && self.messages.last().is_some_and(|m| {
                m.to == to
                    && !m.ended
                    && len <= m.segment_len
                    && m.segments < MAX_SEGMENTS
                    && m.bytes + len <= MAX_GSO_BYTES
            });
        if joins {
            let m = self.messages.last_mut().expect("checked above");
            m.segments += 1;
            m.bytes += len;
            m.ended = len < m.segment_len;
        } else {
            if self.messages.len() == BATCH {
                self.flush(fd, stats);
            }
            self.messages.push(Message {
                to,
                dest: SockAddr::from(to),
                first: self.datagrams.len(),
                segments: 1,
                segment_len: len,
                bytes: len,
                ended: false,
            });
        }
        self.datagrams.push(datagram);
        if self.datagrams.len() == MAX_DATAGRAMS {
            self.flush(fd, stats);
        }
    }

    /// Sends everything gathered. What the kernel refuses (send buffer full) is dropped and
    /// counted: RTP recovers through NACK/PLI, and waiting would stall every other peer.
    pub fn flush(&mut self, fd: RawFd, stats: &MediaStats) {
        let n = self.messages.len();
        if n == 0 {
            return;
        }
        self.iovecs.clear();
        for d in &self.datagrams {
            self.iovecs.push(libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            });
        }
        self.headers.clear();
        let (mut gso_sends, mut gso_segments) = (0, 0);
        for (m, cmsg) in self.messages.iter().zip(self.cmsgs.iter_mut()) {
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = m.dest.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = m.dest.len();
            h.msg_hdr.msg_iov = &mut self.iovecs[m.first] as *mut libc::iovec;
            h.msg_hdr.msg_iovlen = m.segments as _;
            if m.segments > 1 {
                set_segment_size(&mut h.msg_hdr, cmsg, m.segment_len as u16);
                gso_sends += 1;
                gso_segments += m.segments as u64;
            }
            self.headers.push(h);
        }
        if gso_sends > 0 {
            stats.udp_gso_sends.add(gso_sends);
            stats.udp_gso_segments.add(gso_segments);
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: headers[sent..n] point into `messages`, `iovecs`, `cmsgs` and
            // `datagrams`, which are not touched until the call returns; the length passed
            // matches the slice.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[sent..].as_mut_ptr(),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let m = &self.messages[sent];
            if m.segments > 1 && gso_refused(&err) {
                if self.gso {
                    warn!(error = %err, "UDP GSO refused: sending one datagram per message from now on");
                    self.gso = false;
                }
                let datagrams = &self.datagrams[m.first..m.first + m.segments];
                for d in datagrams {
                    if send_one(fd, &m.dest, d).is_err() {
                        stats.send_drops.add(1);
                    }
                }
            } else {
                // One bad destination (e.g. unreachable) must not block the rest of the batch.
                stats.send_drops.add(m.segments as u64);
            }
            sent += 1;
        }
        for mut d in self.datagrams.drain(..) {
            if self.free.len() < MAX_FREE && d.capacity() >= MIN_REUSED_CAPACITY {
                d.clear();
                self.free.push(d);
            }
        }
        self.messages.clear();
    }
}

/// Puts a `UDP_SEGMENT` control message into `cmsg` and points `hdr` at it.
fn set_segment_size(hdr: &mut libc::msghdr, cmsg: &mut SegmentCmsg, size: u16) {
    // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= cmsg.0.len());
    cmsg.0 = [0; 32];
    hdr.msg_control = cmsg.0.as_mut_ptr() as *mut libc::c_void;
    hdr.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` zeroed, aligned bytes, enough for one cmsghdr
    // and its u16, so CMSG_FIRSTHDR is non-null and CMSG_DATA lies inside the buffer.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size);
    }
}

/// The errors by which a kernel or device says it cannot segment (rather than that one
/// destination failed): no `UDP_SEGMENT` (`EINVAL`, `ENOPROTOOPT`), no checksum offload on
/// the route's device (`EIO`).
fn gso_refused(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

fn send_one(fd: RawFd, dest: &SockAddr, datagram: &[u8]) -> io::Result<()> {
    // SAFETY: the pointers and lengths describe live buffers for the call's duration.
    let r = unsafe {
        libc::sendto(
            fd,
            datagram.as_ptr() as *const libc::c_void,
            datagram.len(),
            0,
            dest.as_ptr() as *const libc::sockaddr,
            dest.len(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether this kernel knows `UDP_SEGMENT` (Linux 4.18+): asked of a throwaway socket.
fn gso_supported() -> bool {
    let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let size: libc::c_int = 1200;
    // SAFETY: a valid fd, and a pointer to a c_int with its size.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn receiver() -> std::net::UdpSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    }

    fn receive_all(s: &std::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|_| {
                let len = s.recv(&mut buf).expect("datagram within 2 s");
                buf[..len].to_vec()
            })
            .collect()
    }

    fn datagram(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    /// Runs of equal-size datagrams to one destination become GSO messages (with a shorter
    /// last one allowed), and every datagram arrives whole, in order, where it was sent.
    #[test]
    fn runs_to_one_destination_arrive_as_separate_datagrams() {
        let stats = MediaStats::default();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (receiver(), receiver());
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut batch = SendBatch::new(true);
        let fd = tx.as_raw_fd();
        // a: 3 × 1200 + 700 (one message), b: 1200, then a again: 900 + 1200 (two messages:
        // a longer datagram cannot follow a shorter one in a message).
        let plan: Vec<(SocketAddr, Vec<u8>)> = vec![
            (to_a, datagram(1, 1200)),
            (to_a, datagram(2, 1200)),
            (to_a, datagram(3, 1200)),
            (to_a, datagram(4, 700)),
            (to_b, datagram(5, 1200)),
            (to_a, datagram(6, 900)),
            (to_a, datagram(7, 1200)),
        ];
        for (to, d) in plan.clone() {
            batch.push(fd, to, d, &stats);
        }
        batch.flush(fd, &stats);
        let at_a: Vec<Vec<u8>> = plan
            .iter()
            .filter(|(to, _)| *to == to_a)
            .map(|(_, d)| d.clone())
            .collect();
        assert_eq!(receive_all(&a, at_a.len()), at_a);
        assert_eq!(receive_all(&b, 1), vec![datagram(5, 1200)]);
        assert_eq!(stats.send_drops.get(), 0);
        if batch.gso() {
            assert_eq!(stats.udp_gso_sends.get(), 1, "the first run of a");
            assert_eq!(stats.udp_gso_segments.get(), 4);
        } else {
            assert_eq!(stats.udp_gso_sends.get(), 0);
        }
    }

    /// A batch larger than one call, and runs longer than one message, all arrive.
    #[test]
    fn long_runs_are_split_and_everything_arrives() {
        let stats = MediaStats::default();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx: Vec<_> = (0..3).map(|_| receiver()).collect();
        let mut batch = SendBatch::new(true);
        let fd = tx.as_raw_fd();
        let per_receiver = 100;
        for r in &rx {
            let to = r.local_addr().unwrap();
            for i in 0..per_receiver {
                batch.push(fd, to, datagram(i as u8, 1000), &stats);
            }
        }
        batch.flush(fd, &stats);
        for r in &rx {
            let got = receive_all(r, per_receiver);
            let want: Vec<Vec<u8>> = (0..per_receiver).map(|i| datagram(i as u8, 1000)).collect();
            assert_eq!(got, want);
        }
        if batch.gso() {
            // At most 64 segments a message: 100 = 64 + 36 per receiver.
            assert_eq!(stats.udp_gso_sends.get(), 6);
            assert_eq!(stats.udp_gso_segments.get(), 300);
        }
    }

    /// Every kernel since 4.18 segments: the checks above must not silently take the
    /// fallback branch here.
    #[test]
    fn a_current_kernel_offers_gso() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().unwrap().parse().unwrap();
        let minor: u32 = parts.next().unwrap().parse().unwrap();
        assert_eq!(
            gso_supported(),
            (major, minor) >= (4, 18),
            "kernel {release}"
        );
        assert_eq!(SendBatch::new(true).gso(), gso_supported());
    }

    /// A message the kernel refuses to segment (here: more segments than its
    /// `UDP_MAX_SEGMENTS`, 64 before Linux 6.x, 128 since) is sent one
    /// datagram at a time, nothing is lost, and the batch stops using GSO.
    #[test]
    fn a_refused_gso_message_falls_back_to_single_datagrams() {
        let stats = MediaStats::default();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = receiver();
        let to = r.local_addr().unwrap();
        let mut batch = SendBatch::new(true);
        if !batch.gso() {
            return; // nothing to fall back from
        }
        let fd = tx.as_raw_fd();
        for i in 0..200 {
            batch.push(fd, to, datagram(i, 100), &stats);
        }
        // push made runs of 64; one message of 200 is what the kernel refuses (EINVAL).
        assert_eq!(batch.messages.len(), 4);
        batch.messages.truncate(1);
        batch.messages[0].segments = 200;
        batch.messages[0].bytes = 20_000;
        batch.flush(fd, &stats);
        let want: Vec<Vec<u8>> = (0..200).map(|i| datagram(i, 100)).collect();
        assert_eq!(receive_all(&r, 200), want);
        assert!(!batch.gso());
        assert_eq!(stats.send_drops.get(), 0);
        // From now on one datagram per message.
        for i in 0..3 {
            batch.push(fd, to, datagram(i, 100), &stats);
        }
        assert_eq!(batch.messages.len(), 3);
        batch.flush(fd, &stats);
        assert_eq!(receive_all(&r, 3).len(), 3);
    }

    /// Without GSO every datagram is its own message and still arrives.
    #[test]
    fn without_gso_every_datagram_is_a_message() {
        let stats = MediaStats::default();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = receiver();
        let to = r.local_addr().unwrap();
        let mut batch = SendBatch::new(false);
        for i in 0..10 {
            batch.push(tx.as_raw_fd(), to, datagram(i, 1200), &stats);
        }
        batch.flush(tx.as_raw_fd(), &stats);
        assert_eq!(receive_all(&r, 10).len(), 10);
        assert_eq!(stats.udp_gso_sends.get(), 0);
    }

    /// Sent buffers come back empty for the next datagrams; small ones (STUN) and more than
    /// a batch's worth are freed.
    #[test]
    fn sent_buffers_are_reused_and_the_pool_is_bounded() {
        let stats = MediaStats::default();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = receiver();
        let to = r.local_addr().unwrap();
        let mut batch = SendBatch::new(false);
        assert_eq!(
            batch.buffer().capacity(),
            BUFFER_CAPACITY,
            "nothing sent yet: a new one"
        );
        let mut first = batch.buffer();
        first.extend_from_slice(&datagram(1, 1200));
        let ptr = first.as_ptr();
        batch.push(tx.as_raw_fd(), to, first, &stats);
        batch.push(tx.as_raw_fd(), to, datagram(2, 60), &stats);
        batch.flush(tx.as_raw_fd(), &stats);
        assert_eq!(receive_all(&r, 2).len(), 2);
        let again = batch.buffer();
        assert!(again.is_empty());
        assert_eq!(
            again.as_ptr(),
            ptr,
            "the sent 1200-byte buffer, not a new one"
        );
        assert!(batch.free.is_empty(), "the 60-byte one was not kept");
        for i in 0..(MAX_FREE + 50) {
            batch.push(tx.as_raw_fd(), to, datagram(i as u8, 1200), &stats);
        }
        batch.flush(tx.as_raw_fd(), &stats);
        assert!(batch.free.len() <= MAX_FREE);
    }
}
