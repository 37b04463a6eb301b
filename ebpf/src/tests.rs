//! Layout tests: the Rust mirrors against the BTF that clang wrote into the object.
//!
//! The committed object carries BTF for `struct smap_event` (the `udp_flows` value)
//! and `struct smap_udp_key` (its key). Reading their sizes and member offsets from
//! there checks the Rust structs against what the kernel programs really write, not
//! against a second hand-copied list.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a panic is the failure report")]

use core::mem::{offset_of, size_of};
use std::string::String;
use std::vec::Vec;

use super::{object, ConnState, DnsReply, Event, UdpFlowKey};

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> usize {
    usize::try_from(u64::from_le_bytes(b[off..off + 8].try_into().unwrap())).unwrap()
}

fn cstr(b: &[u8], off: usize) -> &str {
    let end = b[off..].iter().position(|&c| c == 0).unwrap();
    core::str::from_utf8(&b[off..off + end]).unwrap()
}

/// The bytes of the ELF section named `name` (ELF64, little endian).
fn section<'a>(elf: &'a [u8], name: &str) -> &'a [u8] {
    assert_eq!(&elf[..4], b"\x7fELF");
    let shoff = u64_at(elf, 0x28);
    let shentsize = usize::from(u16_at(elf, 0x3a));
    let shnum = usize::from(u16_at(elf, 0x3c));
    let shstrndx = usize::from(u16_at(elf, 0x3e));
    let header = |i: usize| &elf[shoff + i * shentsize..shoff + (i + 1) * shentsize];
    let strtab = header(shstrndx);
    let names = &elf[u64_at(strtab, 24)..u64_at(strtab, 24) + u64_at(strtab, 32)];
    (0..shnum)
        .map(header)
        .find(|h| cstr(names, u32_at(h, 0) as usize) == name)
        .map(|h| &elf[u64_at(h, 24)..u64_at(h, 24) + u64_at(h, 32)])
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// Size and (member name, byte offset) list of the BTF struct named `name`.
fn btf_struct(name: &str) -> (usize, Vec<(String, usize)>) {
    let btf = section(object(), ".BTF");
    assert_eq!(u16_at(btf, 0), 0xeb9f, "BTF magic");
    let hdr_len = u32_at(btf, 4) as usize;
    let types = &btf[hdr_len + u32_at(btf, 8) as usize..][..u32_at(btf, 12) as usize];
    let strings = &btf[hdr_len + u32_at(btf, 16) as usize..][..u32_at(btf, 20) as usize];
    let mut off = 0;
    while off < types.len() {
        let name_off = u32_at(types, off) as usize;
        let info = u32_at(types, off + 4);
        let size = u32_at(types, off + 8) as usize;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 == 1;
        off += 12;
        // Bytes that follow the common header, per kind (include/uapi/linux/btf.h).
        let extra = match kind {
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 | 19 => 12 * vlen,
            6 | 13 => 8 * vlen,
            _ => 0,
        };
        if kind == 4 && cstr(strings, name_off) == name {
            let members = (0..vlen)
                .map(|i| {
                    let m = off + 12 * i;
                    let bits = u32_at(types, m + 8);
                    let bits = if kind_flag { bits & 0xff_ffff } else { bits };
                    assert_eq!(bits % 8, 0, "{name}: bitfield member");
                    let member = String::from(cstr(strings, u32_at(types, m) as usize));
                    (member, bits as usize / 8)
                })
                .collect();
            return (size, members);
        }
        off += extra;
    }
    panic!("struct {name} not in the object's BTF");
}

#[test]
fn event_matches_the_c_struct() {
    let (size, members) = btf_struct("smap_event");
    assert_eq!(size, size_of::<Event>());
    assert_eq!(size, Event::SIZE);
    let rust = [
        ("ts_ns", offset_of!(Event, ts_ns)),
        ("start_ns", offset_of!(Event, start_ns)),
        ("cookie", offset_of!(Event, cookie)),
        ("cgroup_id", offset_of!(Event, cgroup_id)),
        ("bytes_sent", offset_of!(Event, bytes_sent)),
        ("bytes_received", offset_of!(Event, bytes_received)),
        ("datagrams_sent", offset_of!(Event, datagrams_sent)),
        ("datagrams_received", offset_of!(Event, datagrams_received)),
        ("pid", offset_of!(Event, pid)),
        ("netns", offset_of!(Event, netns)),
        ("retransmits", offset_of!(Event, retransmits)),
        ("family", offset_of!(Event, family)),
        ("sport", offset_of!(Event, sport)),
        ("dport", offset_of!(Event, dport)),
        ("error", offset_of!(Event, error)),
        ("kind", offset_of!(Event, kind)),
        ("side", offset_of!(Event, side)),
        ("flags", offset_of!(Event, flags)),
        ("old_state", offset_of!(Event, old_state)),
        ("saddr", offset_of!(Event, saddr)),
        ("daddr", offset_of!(Event, daddr)),
        ("comm", offset_of!(Event, comm)),
    ];
    let rust: Vec<(String, usize)> = rust.iter().map(|&(n, o)| (String::from(n), o)).collect();
    assert_eq!(members, rust);
}

#[test]
fn udp_flow_key_matches_the_c_struct() {
    let (size, members) = btf_struct("smap_udp_key");
    assert_eq!(size, size_of::<UdpFlowKey>());
    let rust = [
        ("cookie", offset_of!(UdpFlowKey, cookie)),
        ("family", offset_of!(UdpFlowKey, family)),
        ("rport", offset_of!(UdpFlowKey, rport)),
        ("_pad", offset_of!(UdpFlowKey, pad)),
        ("raddr", offset_of!(UdpFlowKey, raddr)),
    ];
    let rust: Vec<(String, usize)> = rust.iter().map(|&(n, o)| (String::from(n), o)).collect();
    assert_eq!(members, rust);
}

#[test]
fn conn_state_matches_the_c_struct() {
    let (size, members) = btf_struct("conn_state");
    assert_eq!(size, size_of::<ConnState>());
    let rust = [
        ("start_ns", offset_of!(ConnState, start_ns)),
        ("cookie", offset_of!(ConnState, cookie)),
        ("cgroup_id", offset_of!(ConnState, cgroup_id)),
        ("report_ns", offset_of!(ConnState, report_ns)),
        ("bytes_sent", offset_of!(ConnState, bytes_sent)),
        ("bytes_received", offset_of!(ConnState, bytes_received)),
        ("reported_sent", offset_of!(ConnState, reported_sent)),
        ("reported_received", offset_of!(ConnState, reported_received)),
        ("pid", offset_of!(ConnState, pid)),
        ("netns", offset_of!(ConnState, netns)),
        ("family", offset_of!(ConnState, family)),
        ("sport", offset_of!(ConnState, sport)),
        ("dport", offset_of!(ConnState, dport)),
        ("side", offset_of!(ConnState, side)),
        ("flags", offset_of!(ConnState, flags)),
        ("saddr", offset_of!(ConnState, saddr)),
        ("daddr", offset_of!(ConnState, daddr)),
        ("comm", offset_of!(ConnState, comm)),
    ];
    let rust: Vec<(String, usize)> = rust.iter().map(|&(n, o)| (String::from(n), o)).collect();
    assert_eq!(members, rust);
}

#[test]
fn dns_reply_matches_the_c_struct() {
    let (size, members) = btf_struct("smap_dns");
    assert_eq!(size, size_of::<DnsReply>());
    assert_eq!(size, DnsReply::SIZE);
    let rust = [
        ("ts_ns", offset_of!(DnsReply, ts_ns)),
        ("cookie", offset_of!(DnsReply, cookie)),
        ("_pad", offset_of!(DnsReply, pad)),
        ("family", offset_of!(DnsReply, family)),
        ("sport", offset_of!(DnsReply, sport)),
        ("dport", offset_of!(DnsReply, dport)),
        ("wire_len", offset_of!(DnsReply, wire_len)),
        ("captured", offset_of!(DnsReply, captured)),
        ("_pad2", offset_of!(DnsReply, pad2)),
        ("saddr", offset_of!(DnsReply, saddr)),
        ("daddr", offset_of!(DnsReply, daddr)),
        ("payload", offset_of!(DnsReply, payload)),
    ];
    let rust: Vec<(String, usize)> = rust.iter().map(|&(n, o)| (String::from(n), o)).collect();
    assert_eq!(members, rust);
    // No other ring record may have its size.
    assert_ne!(DnsReply::SIZE, Event::SIZE);
    assert_ne!(DnsReply::SIZE, super::WAKEUP_MARKER_LEN);
}

#[test]
fn no_implicit_padding() {
    // aya::Pod and from_bytes rely on every byte belonging to a field.
    let event_fields = 8 * 8 + 3 * 4 + 4 * 2 + 4 + 3 * 16;
    assert_eq!(size_of::<Event>(), event_fields);
    assert_eq!(size_of::<UdpFlowKey>(), 8 + 2 + 2 + 4 + 16);
    assert_eq!(size_of::<ConnState>(), 8 * 8 + 2 * 4 + 3 * 2 + 2 + 3 * 16);
    assert_eq!(size_of::<DnsReply>(), 2 * 8 + 4 + 6 * 2 + 2 * 16 + super::DNS_PAYLOAD_LEN);
}

#[test]
fn object_is_aligned_elf_with_every_program() {
    let obj = object();
    assert_eq!(obj.as_ptr() as usize % 8, 0);
    for sec in [
        "tp_btf/inet_sock_set_state",
        "tracepoint/syscalls/sys_exit_accept4",
        "tracepoint/syscalls/sys_exit_accept",
        "cgroup/connect4",
        "cgroup/connect6",
        "cgroup/sendmsg4",
        "cgroup/sendmsg6",
        "cgroup/recvmsg4",
        "cgroup/recvmsg6",
        "tp_btf/sock_send_length",
        "tp_btf/sock_recv_length",
        "tp_btf/tcp_probe",
        "tp_btf/tcp_rcv_space_adjust",
        "iter/tcp",
        "cgroup_skb/ingress",
    ] {
        assert!(!section(obj, sec).is_empty(), "{sec}");
    }
}

#[test]
fn from_bytes_reads_a_record() {
    let mut raw = [0u8; Event::SIZE];
    raw[offset_of!(Event, pid)..][..4].copy_from_slice(&4242u32.to_ne_bytes());
    raw[offset_of!(Event, kind)] = super::kind::TCP_CLOSE;
    raw[offset_of!(Event, comm)..][..4].copy_from_slice(b"curl");
    let e = Event::from_bytes(&raw).unwrap();
    assert_eq!(e.pid, 4242);
    assert_eq!(e.kind, super::kind::TCP_CLOSE);
    assert_eq!(e.comm(), Some("curl"));
    assert_eq!(Event::from_bytes(&raw[..Event::SIZE - 1]), None);
}

/// `#define NAME VALUE` lines of `smap.h` with NAME starting with `prefix`, as
/// (NAME without the prefix, lower case; value). `(1 << n)` values are evaluated.
fn c_constants(prefix: &str) -> Vec<(String, u64)> {
    include_str!("smap.h")
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("#define ")?.strip_prefix(prefix)?;
            let (name, value) = rest.split_once(char::is_whitespace)?;
            let value = value.split("/*").next()?.trim();
            let value = match value.strip_prefix("(1 << ").and_then(|v| v.strip_suffix(')')) {
                Some(shift) => 1u64 << shift.parse::<u32>().ok()?,
                None => value.parse().ok()?,
            };
            Some((name.to_ascii_lowercase(), value))
        })
        .collect()
}

#[test]
fn constants_match_the_c_header() {
    use super::{counter, flag, kind, side};
    let rust_kinds = [
        ("tcp_connect", kind::TCP_CONNECT),
        ("tcp_accept", kind::TCP_ACCEPT),
        ("tcp_close", kind::TCP_CLOSE),
        ("tcp_connect_failed", kind::TCP_CONNECT_FAILED),
        ("udp_flow", kind::UDP_FLOW),
        ("tcp_listen", kind::TCP_LISTEN),
        ("tcp_existing", kind::TCP_EXISTING),
        ("tcp_progress", kind::TCP_PROGRESS),
        ("tcp_open_at_end", kind::TCP_OPEN_AT_END),
    ];
    let rust_sides = [("unknown", side::UNKNOWN), ("client", side::CLIENT), ("server", side::SERVER)];
    let rust_flags = [("syn_uncertain", flag::SYN_UNCERTAIN), ("udp_bytes", flag::UDP_BYTES)];
    let rust_counters = [
        ("ringbuf_drops", counter::RINGBUF_DROPS),
        ("conn_inserts", counter::CONN_INSERTS),
        ("conn_deletes", counter::CONN_DELETES),
        ("close_untracked", counter::CLOSE_UNTRACKED),
        ("connect_untracked", counter::CONNECT_UNTRACKED),
        ("accept_untracked", counter::ACCEPT_UNTRACKED),
        ("udp_flow_inserts", counter::UDP_FLOW_INSERTS),
        ("map_full", counter::MAP_FULL),
        ("tcp_existing", counter::TCP_EXISTING),
        ("tcp_progress", counter::TCP_PROGRESS),
        ("dns_replies", counter::DNS_REPLIES),
        ("dns_skipped", counter::DNS_SKIPPED),
        ("len", counter::LEN),
    ];
    let owned =
        |pairs: &[(&str, u64)]| -> Vec<(String, u64)> { pairs.iter().map(|&(n, v)| (String::from(n), v)).collect() };
    let widen8 = |pairs: &[(&'static str, u8)]| -> Vec<(&'static str, u64)> {
        pairs.iter().map(|&(n, v)| (n, u64::from(v))).collect()
    };
    let widen32 = |pairs: &[(&'static str, u32)]| -> Vec<(&'static str, u64)> {
        pairs.iter().map(|&(n, v)| (n, u64::from(v))).collect()
    };
    assert_eq!(c_constants("SMAP_KIND_"), owned(&widen8(&rust_kinds)));
    assert_eq!(c_constants("SMAP_SIDE_"), owned(&widen8(&rust_sides)));
    assert_eq!(c_constants("SMAP_FLAG_"), owned(&widen8(&rust_flags)));
    assert_eq!(c_constants("SMAP_CTR_"), owned(&widen32(&rust_counters)));
    let payload = u64::try_from(super::DNS_PAYLOAD_LEN).unwrap();
    assert!(c_constants("SMAP_DNS_").contains(&(String::from("payload_len"), payload)));
}
