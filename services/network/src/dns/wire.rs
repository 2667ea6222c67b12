//! The little of the DNS wire format (RFC 1035) the embedded resolver needs:
//! reading the one question of a query, and writing an answer with A or PTR
//! records. Everything else is forwarded byte for byte, so nothing here has to
//! understand EDNS, DNSSEC or record types it does not answer itself.

use std::net::Ipv4Addr;

/// Record type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type PTR (a reverse lookup).
pub const TYPE_PTR: u16 = 12;
/// Record type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// No error.
pub const NOERROR: u8 = 0;
/// The query could not be read.
pub const FORMERR: u8 = 1;
/// The resolver could not answer (no upstream, or none answered).
pub const SERVFAIL: u8 = 2;
/// The name does not exist.
pub const NXDOMAIN: u8 = 3;

/// How long clients may keep a container's record, as dockerd's resolver says.
const TTL: u32 = 600;
/// The largest answer over UDP without EDNS.
pub const UDP_LIMIT: usize = 512;

/// A standard query with one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The transaction ID, echoed in the answer.
    pub id: u16,
    /// Whether the client asked for recursion (echoed).
    pub recursion_desired: bool,
    /// The name asked for, lower case, without the final dot.
    pub name: String,
    /// The record type asked for.
    pub qtype: u16,
    /// The record class asked for.
    pub qclass: u16,
    /// The question as it came (name, type, class), copied into the answer.
    question: Vec<u8>,
}

/// One record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An IPv4 address of the name asked for.
    A(Ipv4Addr),
    /// An IPv6 address of the name asked for.
    Aaaa(std::net::Ipv6Addr),
    /// The name of the address asked for (reverse lookup).
    Ptr(String),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The transaction ID of anything long enough to have a header.
pub fn id_of(packet: &[u8]) -> Option<u16> {
    u16_at(packet, 0)
}

/// Reads a standard query (QR=0, opcode 0) with exactly one question whose
/// name is uncompressed, as every stub resolver sends it. Anything else is
/// `None` (and gets FORMERR, or is forwarded as it is).
pub fn parse_query(packet: &[u8]) -> Option<Query> {
    if packet.len() < 12 {
        return None;
    }
    let id = u16_at(packet, 0)?;
    let flags = u16_at(packet, 2)?;
    let (qr, opcode) = (flags >> 15, (flags >> 11) & 0xf);
    if qr != 0 || opcode != 0 || u16_at(packet, 4)? != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut wire_len = 0usize;
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (0xc0) and the reserved label types have no place here.
        if len > 63 {
            return None;
        }
        wire_len += len + 1;
        if wire_len > 255 {
            return None;
        }
        let label = packet.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16_at(packet, at)?;
    let qclass = u16_at(packet, at + 2)?;
    let question = packet.get(12..at + 4)?.to_vec();
    Some(Query { id, recursion_desired: flags & 0x0100 != 0, name: labels.join("."), qtype, qclass, question })
}

/// Writes `name` as labels (no compression).
fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

fn header(out: &mut Vec<u8>, id: u16, rd: bool, truncated: bool, rcode: u8, qd: u16, an: u16) {
    // QR=1, opcode 0, AA=1 for what the resolver knows itself, RA=1.
    let mut flags: u16 = 0x8000 | 0x0400 | 0x0080 | u16::from(rcode & 0xf);
    if rd {
        flags |= 0x0100;
    }
    if truncated {
        flags |= 0x0200;
    }
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The answer to `q`: `records` (as many as fit in `limit` bytes; the rest set
/// the truncation bit, so the client asks again over TCP) with `rcode`.
pub fn answer(q: &Query, rcode: u8, records: &[Record], limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count: u16 = 0;
    let mut truncated = false;
    for r in records {
        let mut rr = vec![0xc0, 0x0c]; // the name of the question, at offset 12
        let (rtype, rdata) = match r {
            Record::A(ip) => (TYPE_A, ip.octets().to_vec()),
            Record::Aaaa(ip) => (TYPE_AAAA, ip.octets().to_vec()),
            Record::Ptr(name) => {
                let mut d = Vec::new();
                put_name(&mut d, name);
                (TYPE_PTR, d)
            }
        };
        rr.extend_from_slice(&rtype.to_be_bytes());
        rr.extend_from_slice(&CLASS_IN.to_be_bytes());
        rr.extend_from_slice(&TTL.to_be_bytes());
        rr.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        rr.extend_from_slice(&rdata);
        if 12 + q.question.len() + body.len() + rr.len() > limit || count == u16::MAX {
            truncated = true;
            break;
        }
        body.extend_from_slice(&rr);
        count += 1;
    }
    let mut out = Vec::with_capacity(12 + q.question.len() + body.len());
    header(&mut out, q.id, q.recursion_desired, truncated, rcode, 1, count);
    out.extend_from_slice(&q.question);
    out.extend_from_slice(&body);
    out
}

/// A bare error answer for a packet that could not be read as a query.
pub fn error_for(id: u16, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    header(&mut out, id, false, false, rcode, 0, 0);
    out
}

/// The address a reverse-lookup name stands for (`4.3.2.1.in-addr.arpa` is
/// 1.2.3.4).
pub fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest.split('.').map(|p| p.parse().ok()).collect::<Option<Vec<u8>>>()?;
    match parts.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // A container controls every byte of its queries: any packet is a
        // query or nothing, never a panic.
        #[test]
        fn any_packet_is_parsed_or_ignored(packet in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_query(&packet);
        }
    }

    /// A query as a stub resolver writes it.
    pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut p = Vec::new();
        for v in [id, 0x0100, 1, 0, 0, 0] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        put_name(&mut p, name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p
    }

    #[test]
    fn reads_a_query_and_answers_it() {
        let p = query(0xbeef, "Web.Example.", TYPE_A);
        let q = parse_query(&p).expect("query");
        assert_eq!((q.id, q.name.as_str(), q.qtype, q.qclass), (0xbeef, "web.example", TYPE_A, CLASS_IN));
        assert!(q.recursion_desired);
        let a = answer(&q, NOERROR, &[Record::A(Ipv4Addr::new(10, 1, 2, 3))], UDP_LIMIT);
        assert_eq!(&a[..2], &[0xbe, 0xef]);
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(a[3] & 0x0f, NOERROR);
        assert_eq!(u16_at(&a, 6), Some(1), "one answer");
        // Question copied, then the record ending in the address.
        assert_eq!(&a[12..12 + p.len() - 12], &p[12..]);
        assert_eq!(&a[a.len() - 4..], &[10, 1, 2, 3]);
        let nx = answer(&q, NXDOMAIN, &[], UDP_LIMIT);
        assert_eq!((nx[3] & 0x0f, u16_at(&nx, 6)), (NXDOMAIN, Some(0)));
    }

    #[test]
    fn ptr_records_and_reverse_names() {
        assert_eq!(reverse_v4("3.2.1.10.in-addr.arpa"), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(reverse_v4("1.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("example.com"), None);
        let q = parse_query(&query(1, "3.2.1.10.in-addr.arpa", TYPE_PTR)).expect("query");
        let a = answer(&q, NOERROR, &[Record::Ptr("web.net-a".into())], UDP_LIMIT);
        assert!(a.ends_with(b"\x03web\x05net-a\x00"), "{a:?}");
    }

    #[test]
    fn too_many_answers_for_udp_set_the_truncation_bit() {
        let q = parse_query(&query(7, "many", TYPE_A)).expect("query");
        let records: Vec<Record> = (0..100).map(|i| Record::A(Ipv4Addr::new(10, 0, 0, i))).collect();
        let a = answer(&q, NOERROR, &records, UDP_LIMIT);
        assert!(a.len() <= UDP_LIMIT);
        assert_eq!(a[2] & 0x02, 0x02, "TC set");
        let all = answer(&q, NOERROR, &records, 65535);
        assert_eq!(u16_at(&all, 6), Some(100));
        assert_eq!(all[2] & 0x02, 0);
    }

    #[test]
    fn rejects_what_is_not_a_plain_query() {
        assert_eq!(parse_query(&[0; 5]), None, "short");
        let mut response = query(1, "a", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), None, "a response");
        let mut two = query(1, "a", TYPE_A);
        two[5] = 2;
        assert_eq!(parse_query(&two), None, "two questions");
        let mut pointer = query(1, "a", TYPE_A);
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), None, "compressed question");
        let truncated = query(1, "abc", TYPE_A);
        assert_eq!(parse_query(&truncated[..truncated.len() - 3]), None);
        let long: String = vec!["a".repeat(63); 5].join(".");
        assert_eq!(parse_query(&query(1, &long, TYPE_A)), None, "names over 255 bytes");
        // Arbitrary bytes never panic.
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            let _ = parse_query(&junk);
        }
        assert_eq!(error_for(9, FORMERR)[3] & 0x0f, FORMERR);
    }
}
