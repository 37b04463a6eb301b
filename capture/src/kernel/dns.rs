//! DNS replies the kernel copied (`ebpf/src/dns.bpf.h`) turned into [`DnsAnswer`]s:
//! per address, the name the client asked for, the CNAMEs that led to it and the TTL.
//!
//! The message is parsed with `simple-dns`, which returns errors, never panics, on any
//! bytes (the property tests below feed it random and mangled ones). A reply the kernel
//! cut to fit keeps the answers that fit whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag, RCODE};
use smap_ebpf::DnsReply;
use smap_replay::DnsAnswer;

use super::convert::decode_addr;
use crate::clock::Clock;

/// CNAMEs followed from a question before giving up (a loop, or a hostile reply).
const MAX_CHAIN: usize = 16;

/// One address a reply gave, before it is stamped with time and addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) query: String,
    pub(crate) cnames: Vec<String>,
    pub(crate) address: IpAddr,
    pub(crate) ttl_s: u32,
}

/// What a reply held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The addresses it gave (possibly none: NXDOMAIN, no record of the type asked).
    Answers(Vec<Resolved>),
    /// Not a DNS response (a query sent from port 53, say): nothing to learn.
    NotAResponse,
    /// Bytes that are no DNS message.
    Malformed,
}

/// Parses a DNS message; `truncated`: the kernel cut it, so its counts overstate it.
pub(crate) fn parse(message: &[u8], truncated: bool) -> Reply {
    match Packet::parse(message) {
        Ok(packet) => answers(&packet),
        Err(_) if truncated => parse_cut(message),
        Err(_) => Reply::Malformed,
    }
}

/// A cut message: without its authority and additional sections, then with as many
/// answers as fit whole.
fn parse_cut(message: &[u8]) -> Reply {
    if message.len() < 12 {
        return Reply::Malformed;
    }
    let mut copy = message.to_vec();
    copy[8..12].fill(0);
    let ancount = u16::from_be_bytes([copy[6], copy[7]]);
    // An answer takes at least 11 bytes: no more than that many can fit.
    let fit = u16::try_from(message.len() / 11).unwrap_or(u16::MAX);
    let mut count = ancount.min(fit);
    loop {
        copy[6..8].copy_from_slice(&count.to_be_bytes());
        if let Ok(packet) = Packet::parse(&copy) {
            return answers(&packet);
        }
        if count == 0 {
            return Reply::Malformed;
        }
        count -= 1;
    }
}

fn name(n: &simple_dns::Name<'_>) -> String {
    let mut text = n.to_string().to_ascii_lowercase();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

fn answers(packet: &Packet<'_>) -> Reply {
    if !packet.has_flags(PacketFlag::RESPONSE) {
        return Reply::NotAResponse;
    }
    let Some(question) = packet.questions.first() else {
        return Reply::Answers(Vec::new());
    };
    if packet.rcode() != RCODE::NoError {
        return Reply::Answers(Vec::new());
    }
    let query = name(&question.qname);
    // Follow the chain from the question: each step's name, and the lowest TTL so far
    // (an address is only as fresh as the CNAME that led to it).
    let mut chain: Vec<(String, u32)> = vec![(query.clone(), u32::MAX)];
    while chain.len() <= MAX_CHAIN {
        let Some((current, ttl)) = chain.last().cloned() else { break };
        let next = packet.answers.iter().find_map(|rr| match &rr.rdata {
            RData::CNAME(target) if name(&rr.name) == current => Some((name(&target.0), ttl.min(rr.ttl))),
            _ => None,
        });
        match next {
            Some(step) if !chain.iter().any(|(n, _)| *n == step.0) => chain.push(step),
            _ => break,
        }
    }
    let mut out = Vec::new();
    for rr in &packet.answers {
        let address = match &rr.rdata {
            RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
            RData::AAAA(a) => IpAddr::V6(Ipv6Addr::from(a.address)),
            _ => continue,
        };
        let owner = name(&rr.name);
        let Some(step) = chain.iter().position(|(n, _)| *n == owner) else { continue };
        out.push(Resolved {
            query: query.clone(),
            cnames: chain[1..=step].iter().map(|(n, _)| n.clone()).collect(),
            address,
            ttl_s: rr.ttl.min(chain[step].1),
        });
    }
    Reply::Answers(out)
}

/// What the capture counted of DNS replies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DnsStats {
    pub(crate) replies: u64,
    pub(crate) answers: u64,
    pub(crate) truncated: u64,
    pub(crate) malformed: u64,
}

/// Turns a kernel record into answers, counting what it held.
pub(crate) fn convert(
    reply: &DnsReply,
    node: &Arc<str>,
    clock: &Clock,
    stats: &mut DnsStats,
    out: &mut Vec<DnsAnswer>,
) {
    stats.replies += 1;
    let (Some(server_ip), Some(client_ip)) =
        (decode_addr(reply.family, &reply.saddr), decode_addr(reply.family, &reply.daddr))
    else {
        stats.malformed += 1;
        return;
    };
    if reply.truncated() {
        stats.truncated += 1;
    }
    let resolved = match parse(reply.message(), reply.truncated()) {
        Reply::Answers(resolved) => resolved,
        Reply::NotAResponse => return,
        Reply::Malformed => {
            stats.malformed += 1;
            return;
        }
    };
    let time_ns = clock.to_wall(reply.ts_ns);
    for r in resolved {
        stats.answers += 1;
        out.push(DnsAnswer {
            time_ns,
            node: Arc::clone(node),
            client_ip,
            client_port: reply.dport,
            server_ip,
            socket_id: reply.cookie,
            query: Arc::from(r.query),
            cnames: Arc::from(r.cnames.join(",")),
            address: r.address,
            ttl_s: r.ttl_s,
        });
    }
}

#[cfg(test)]
mod tests;
