//! IP packets built by hand for a raw IPPROTO_RAW socket (which may name any source):
//! segments from the peer of a restored TCP connection (its FIN, urgent data:
//! `tcp::from_peer`) and the queued
//! datagrams of a UDP socket (`udpq`), sent again to the restored socket.

/// Internet checksum (RFC 1071) of `parts`, concatenated.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut hi: Option<u8> = None;
    for b in parts.iter().flat_map(|p| p.iter()) {
        match hi.take() {
            None => hi = Some(*b),
            Some(h) => sum += u32::from(u16::from_be_bytes([h, *b])),
        }
    }
    if let Some(h) = hi {
        sum += u32::from(u16::from_be_bytes([h, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Is the sockaddr_in6 `a` an IPv4-mapped address (::ffff:a.b.c.d)?
pub fn mapped(a: &[u8]) -> bool {
    a.len() >= 24 && a[8..18].iter().all(|b| *b == 0) && a[18] == 0xff && a[19] == 0xff
}

/// The IPv4 (`v4`) or IPv6 packet carrying transport segment `l4` of protocol `proto`
/// from `src` to `dst` (4 or 16 address bytes). The segment's checksum, at byte
/// `csum_at` of it, is filled in over the pseudo-header (a UDP checksum that comes out
/// 0 is sent as 0xffff: 0 means "none", and UDP-Lite does the same). TTL 64; IPv4: DF, and the kernel fills the
/// header checksum and id.
pub fn ip_packet(v4: bool, proto: u8, src: &[u8], dst: &[u8], mut l4: Vec<u8>, csum_at: usize) -> Vec<u8> {
    let len = (l4.len() as u32).to_be_bytes();
    let mut sum = if v4 {
        checksum(&[src, dst, &[0, proto], &len[2..4], &l4])
    } else {
        checksum(&[src, dst, &len, &[0, 0, 0, proto], &l4])
    };
    if sum == 0 && (proto == libc::IPPROTO_UDP as u8 || proto == libc::IPPROTO_UDPLITE as u8) {
        sum = 0xffff;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut p = Vec::with_capacity(40 + l4.len());
    if v4 {
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    } else {
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[proto, 64]);
    }
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    p.extend_from_slice(&l4);
    p
}
