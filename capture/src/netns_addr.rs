//! The address of a network namespace, for UDP clients whose socket has none.
//!
//! An unconnected UDP socket has no source address: the kernel picks one per datagram
//! from the route, so the socket hooks report `0.0.0.0`. A pod's network namespace has
//! one address (its pod IP), which is the address the datagrams carried; it is found
//! through any process living in that namespace (`/proc/PID/ns/net`) and that
//! process's view of its local addresses (`/proc/PID/net/fib_trie`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use smap_replay::{ConnEvent, ConnKind, Side};

/// Namespace addresses found are remembered, up to this many.
const CACHE_LIMIT: usize = 4096;

/// Fills in the source address of UDP client flows that lack one.
#[derive(Debug, Default)]
pub struct NetnsAddresses {
    cache: HashMap<u32, (Ipv4Addr, u32)>,
}

impl NetnsAddresses {
    /// Sets the local address of UDP flows reported as `0.0.0.0` (the client's source,
    /// the server's destination) to their namespace's single non-loopback IPv4 address,
    /// or loopback for loopback traffic; leaves it unspecified when the namespace has
    /// several addresses or is gone.
    pub fn fill(&mut self, event: &mut ConnEvent, hint_pid: u32) {
        if event.kind != ConnKind::UdpFlow {
            return;
        }
        let (local, remote) = match event.side {
            Side::Client => (event.src_ip, event.dst_ip),
            Side::Server => (event.dst_ip, event.src_ip),
        };
        // fib_trie lists IPv4 addresses only; an IPv6 socket keeps its `::`.
        if !local.is_unspecified() || !remote.is_ipv4() {
            return;
        }
        let filled =
            if remote.is_loopback() { Some(Ipv4Addr::LOCALHOST) } else { self.address_of(event.netns, hint_pid) };
        if let Some(ip) = filled {
            match event.side {
                Side::Client => event.src_ip = IpAddr::V4(ip),
                Side::Server => event.dst_ip = IpAddr::V4(ip),
            }
        }
    }
}

impl NetnsAddresses {
    /// The namespace's address, remembered with the process it was read through: the
    /// kernel reuses a freed namespace's inode number, so an answer holds only while
    /// that process still lives in that namespace.
    fn address_of(&mut self, netns: u32, hint_pid: u32) -> Option<Ipv4Addr> {
        if let Some((ip, pid)) = self.cache.get(&netns) {
            if netns_of(*pid) == Some(netns) {
                return Some(*ip);
            }
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        let pid = if netns_of(hint_pid) == Some(netns) { hint_pid } else { find_process_in(netns)? };
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).ok()?;
        let ip = single_local_address(&text)?;
        self.cache.insert(netns, (ip, pid));
        Some(ip)
    }
}

fn netns_of(pid: u32) -> Option<u32> {
    if pid == 0 {
        return None;
    }
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let text = link.to_string_lossy();
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn find_process_in(netns: u32) -> Option<u32> {
    let entries = std::fs::read_dir(Path::new("/proc")).ok()?;
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(|pid| netns_of(*pid) == Some(netns))
}

/// The one non-loopback `/32 host LOCAL` address of a fib_trie dump, if exactly one.
fn single_local_address(fib_trie: &str) -> Option<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("|-- ").or_else(|| line.strip_prefix("+-- ")) {
            last = rest.split('/').next().and_then(|ip| ip.trim().parse().ok());
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| !ip.is_loopback() && !found.contains(ip)) {
                found.push(ip);
            }
        }
    }
    match found.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        |-- 10.244.1.10
           /32 host LOCAL
  +-- 127.0.0.0/8 2 0 2
     |-- 127.0.0.1
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.244.1.0/24 2 0 2
        |-- 10.244.1.10
           /32 host LOCAL
";

    #[test]
    fn a_pod_has_one_address() {
        assert_eq!(single_local_address(POD), Some(Ipv4Addr::new(10, 244, 1, 10)));
    }

    #[test]
    fn a_host_with_several_addresses_is_ambiguous() {
        let two = POD.replace("Local:", "  |-- 192.168.1.5\n     /32 host LOCAL\nLocal:");
        assert_eq!(single_local_address(&two), None);
    }

    #[test]
    fn this_process_namespace_is_found() {
        let pid = std::process::id();
        let netns = netns_of(pid).unwrap();
        assert!(find_process_in(netns).is_some());
    }
}
