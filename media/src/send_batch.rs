//! Outgoing datagrams gathered and handed to the kernel with one `sendmmsg` call per batch.
//!
//! Fan-out is dominated by the kernel's per-datagram cost (DESIGN.md, performance budget);
//! one system call for up to [`BATCH`] datagrams removes the per-call overhead. The buffers
//! are str0m's own (moved in, never copied) and every array here is allocated once.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

use crate::stats::MediaStats;

/// Datagrams per `sendmmsg` call.
pub(crate) const BATCH: usize = 64;

pub(crate) struct SendBatch {
    dests: Vec<SockAddr>,
    datagrams: Vec<Vec<u8>>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    pub fn new() -> Self {
        Self {
            dests: Vec::with_capacity(BATCH),
            datagrams: Vec::with_capacity(BATCH),
            iovecs: Vec::with_capacity(BATCH),
            headers: Vec::with_capacity(BATCH),
        }
    }

    pub fn push(&mut self, fd: RawFd, to: SocketAddr, datagram: Vec<u8>, stats: &MediaStats) {
        self.dests.push(SockAddr::from(to));
        self.datagrams.push(datagram);
        if self.datagrams.len() >= BATCH {
            self.flush(fd, stats);
        }
    }

    /// Sends everything gathered. What the kernel refuses (send buffer full) is dropped and
    /// counted: RTP recovers through NACK/PLI, and waiting would stall every other peer.
    pub fn flush(&mut self, fd: RawFd, stats: &MediaStats) {
        let n = self.datagrams.len();
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
        for (dest, iov) in self.dests.iter().zip(self.iovecs.iter_mut()) {
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = dest.len();
            h.msg_hdr.msg_iov = iov as *mut libc::iovec;
            h.msg_hdr.msg_iovlen = 1;
            self.headers.push(h);
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: headers[sent..n] point into `dests`, `iovecs` and `datagrams`, which are
            // not touched until the call returns; the length passed matches the slice.
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
            // One bad destination (e.g. unreachable) must not block the rest of the batch.
            stats.send_drops.add(1);
            sent += 1;
        }
        self.datagrams.clear();
        self.dests.clear();
    }
}
