//! Names clients resolved, by event time: which name a caller asked for before it
//! dialed an outside address, so the address is shown under that name.
//!
//! Per caller, because two pods may reach one address by different names (a shared
//! load balancer, a CDN edge); by the name asked for, not the last CNAME, because that
//! is the dependency the application has. An answer names an address from the time it
//! was delivered until its TTL ends, plus `dns_name_grace` for clients that cache a
//! little longer; a connection before the answer or after that keeps the address form.

use std::net::IpAddr;
use std::sync::Arc;

use hashbrown::HashMap;
use smap_replay::{DnsAnswer, TimeNs};

use crate::engine::resolve::canonical;

/// Answers remembered at once; past it expired ones are dropped, then all, so odd
/// traffic (a scanner resolving millions of names) cannot grow the table.
const LIMIT: usize = 65_536;

/// What one caller resolved to one address, last.
#[derive(Clone, Debug)]
struct Resolved {
    name: Arc<str>,
    /// The name stops applying after this time.
    until: TimeNs,
}

/// The names each caller resolved, as of the last answer folded.
#[derive(Debug, Default)]
pub(crate) struct DnsNames {
    names: HashMap<(IpAddr, IpAddr), Resolved>,
    grace: TimeNs,
}

impl DnsNames {
    pub(crate) fn new(grace: TimeNs) -> Self {
        DnsNames { names: HashMap::new(), grace }
    }

    /// Folds one answer: from now on its address is its name for its client. A later
    /// answer for the same client and address (another name, or the same one renewed)
    /// replaces it: a client resolves right before it connects.
    pub(crate) fn learn(&mut self, answer: &DnsAnswer) {
        if answer.query.is_empty() {
            return;
        }
        if self.names.len() >= LIMIT {
            let now = answer.time_ns;
            self.names.retain(|_, r| r.until >= now);
            if self.names.len() >= LIMIT {
                self.names.clear();
            }
        }
        let ttl = TimeNs::from(answer.ttl_s).saturating_mul(1_000_000_000);
        let until = answer.time_ns.saturating_add(ttl).saturating_add(self.grace);
        let key = (canonical(&answer.client_ip), canonical(&answer.address));
        self.names.insert(key, Resolved { name: Arc::clone(&answer.query), until });
    }

    /// Whether `client`'s latest answer for `address` was `name`, expired or not.
    pub(crate) fn last_name_is(&self, client: &IpAddr, address: &IpAddr, name: &str) -> bool {
        self.names.get(&(canonical(client), canonical(address))).is_some_and(|r| &*r.name == name)
    }

    /// The name `client` resolved to `address` that still applied at `t`.
    pub(crate) fn name(&self, client: &IpAddr, address: &IpAddr, t: TimeNs) -> Option<&Arc<str>> {
        if self.names.is_empty() {
            return None;
        }
        let resolved = self.names.get(&(canonical(client), canonical(address)))?;
        (t <= resolved.until).then_some(&resolved.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: TimeNs = 1_000_000_000;

    fn answer(t: TimeNs, client: &str, query: &str, address: &str, ttl_s: u32) -> DnsAnswer {
        DnsAnswer {
            time_ns: t,
            node: Arc::from("n"),
            client_ip: client.parse().unwrap(),
            client_port: 40000,
            server_ip: IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 10)),
            socket_id: 1,
            query: Arc::from(query),
            cnames: Arc::from(""),
            address: address.parse().unwrap(),
            ttl_s,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_name_applies_from_its_answer_until_its_ttl_and_the_grace_end() {
        let mut names = DnsNames::new(5 * S);
        names.learn(&answer(100 * S, "10.244.1.5", "api.example", "203.0.113.10", 60));
        let (client, address) = (ip("10.244.1.5"), ip("203.0.113.10"));
        assert_eq!(names.name(&client, &address, 100 * S).map(|n| &**n), Some("api.example"));
        assert_eq!(names.name(&client, &address, 165 * S).map(|n| &**n), Some("api.example"));
        assert_eq!(names.name(&client, &address, 166 * S), None);
        // Mapped IPv4, as a dual-stack socket reports it.
        assert!(names.name(&ip("::ffff:10.244.1.5"), &ip("::ffff:203.0.113.10"), 101 * S).is_some());
    }

    #[test]
    fn names_are_per_caller_and_the_latest_answer_wins() {
        let mut names = DnsNames::new(0);
        names.learn(&answer(S, "10.244.1.5", "a.example", "203.0.113.30", 300));
        names.learn(&answer(S, "10.244.1.6", "b.example", "203.0.113.30", 300));
        let address = ip("203.0.113.30");
        assert_eq!(names.name(&ip("10.244.1.5"), &address, 2 * S).map(|n| &**n), Some("a.example"));
        assert_eq!(names.name(&ip("10.244.1.6"), &address, 2 * S).map(|n| &**n), Some("b.example"));
        assert_eq!(names.name(&ip("10.244.1.7"), &address, 2 * S), None);
        names.learn(&answer(3 * S, "10.244.1.5", "c.example", "203.0.113.30", 300));
        assert_eq!(names.name(&ip("10.244.1.5"), &address, 4 * S).map(|n| &**n), Some("c.example"));
    }
}
