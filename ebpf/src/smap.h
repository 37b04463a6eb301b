/* smap.h: the event ABI shared by the kernel programs and ebpf/src/lib.rs.
 *
 * Every layout here is mirrored by #[repr(C)] structs in ebpf/src/lib.rs; the
 * _Static_asserts below pin the sizes and offsets that the Rust tests check too, so a
 * change on one side without the other fails a build or a test.
 */
#ifndef SMAP_H
#define SMAP_H

#include <linux/types.h>

#define SMAP_COMM_LEN 16
#define SMAP_ADDR_LEN 16

/* What an event reports (smap_event.kind). */
#define SMAP_KIND_TCP_CONNECT 1
#define SMAP_KIND_TCP_ACCEPT 2
#define SMAP_KIND_TCP_CLOSE 3
#define SMAP_KIND_TCP_CONNECT_FAILED 4
#define SMAP_KIND_UDP_FLOW 5
/* A socket started listening: never recorded, it teaches user space which local ports
 * are servers so that closes of connections opened before capture get a side. */
#define SMAP_KIND_TCP_LISTEN 6
/* A TCP connection smap had not seen open, found established: on its first bytes
 * (data-path hooks) or by the enumeration at start (iter/tcp). Carries the socket's
 * payload byte counters so far. Reported once per socket. */
#define SMAP_KIND_TCP_EXISTING 7
/* An open TCP connection moved bytes since its last report, at most once per
 * progress_ns; carries the byte counters so far. */
#define SMAP_KIND_TCP_PROGRESS 8
/* Still open when the capture stopped: written by user space from the `conns` map,
 * never by a program; carries the byte counters as of the socket's last segment. */
#define SMAP_KIND_TCP_OPEN_AT_END 9

/* Which end the reporting socket is (smap_event.side). */
#define SMAP_SIDE_UNKNOWN 0
#define SMAP_SIDE_CLIENT 1
#define SMAP_SIDE_SERVER 2

/* smap_event.flags */
/* bytes_sent may still count the SYN: the side of this socket was unknown (opened
 * before capture), and only an active opener's bytes_acked counts its SYN. */
#define SMAP_FLAG_SYN_UNCERTAIN (1 << 0)
/* UDP: bytes were counted (the sock_{send,recv}_length tracepoints are attached). */
#define SMAP_FLAG_UDP_BYTES (1 << 1)

/* Indices into the per-CPU `counters` array. */
#define SMAP_CTR_RINGBUF_DROPS 0     /* bpf_ringbuf_reserve failed: event lost */
#define SMAP_CTR_CONN_INSERTS 1      /* entries created in `conns` */
#define SMAP_CTR_CONN_DELETES 2      /* entries removed from `conns` by the programs */
#define SMAP_CTR_CLOSE_UNTRACKED 3   /* TCP close of a socket absent from `conns` */
#define SMAP_CTR_CONNECT_UNTRACKED 4 /* SYN_SENT->ESTABLISHED without the connect() entry */
#define SMAP_CTR_ACCEPT_UNTRACKED 5  /* accept() of a socket absent from `conns` */
#define SMAP_CTR_UDP_FLOW_INSERTS 6  /* entries created in `udp_flows` */
#define SMAP_CTR_MAP_FULL 7          /* a map update failed (not an LRU eviction) */
#define SMAP_CTR_TCP_EXISTING 8      /* open connections found on their first bytes */
#define SMAP_CTR_TCP_PROGRESS 9      /* progress reports written */
#define SMAP_CTR_DNS_REPLIES 10      /* DNS replies copied to the ring */
#define SMAP_CTR_DNS_SKIPPED 11      /* DNS replies without an answer, not copied */
#define SMAP_CTR_LEN 12

/* One connection event, written to the `events` ring buffer; also the value type of
 * the `udp_flows` map (kind SMAP_KIND_UDP_FLOW), which user space reads periodically.
 *
 * Addresses are those of the reporting socket: saddr/sport local, daddr/dport remote.
 * family AF_INET: the address in the first 4 bytes (network order), the rest zero.
 * family AF_INET6: all 16 bytes; a dual-stack socket talking IPv4 shows v4-mapped
 * addresses (::ffff:a.b.c.d). Ports are in host byte order.
 * Times are CLOCK_BOOTTIME nanoseconds (bpf_ktime_get_boot_ns).
 */
struct smap_event {
	__u64 ts_ns;              /* event time; UDP flow: last datagram */
	__u64 start_ns;           /* connect()/SYN/first datagram; 0 if before capture */
	__u64 cookie;             /* socket cookie; 0 if the kernel had not made one */
	__u64 cgroup_id;          /* cgroup v2 id of the owning process */
	__u64 bytes_sent;         /* payload bytes (TCP close, UDP flow) */
	__u64 bytes_received;     /* payload bytes (TCP close, UDP flow) */
	__u64 datagrams_sent;     /* UDP flow */
	__u64 datagrams_received; /* UDP flow */
	__u32 pid;                /* tgid of the owning process, 0 if unknown */
	__u32 netns;              /* network namespace inode */
	__u32 retransmits;        /* tcp_sock.total_retrans at close */
	__u16 family;             /* AF_INET or AF_INET6 */
	__u16 sport;              /* local port */
	__u16 dport;              /* remote port */
	__u16 error;              /* failed connect: sk_err (ECONNREFUSED...); close of an
	                           * aborted connection: ECONNRESET, ETIMEDOUT...; else 0 */
	__u8 kind;                /* SMAP_KIND_* */
	__u8 side;                /* SMAP_SIDE_* */
	__u8 flags;               /* SMAP_FLAG_* */
	__u8 old_state;           /* TCP state before the transition (TCP_* numbering) */
	__u8 saddr[SMAP_ADDR_LEN];
	__u8 daddr[SMAP_ADDR_LEN];
	char comm[SMAP_COMM_LEN]; /* process (thread-group leader) name */
};

/* Key of the `udp_flows` map: one socket talking to one peer. */
struct smap_udp_key {
	__u64 cookie;
	__u16 family;
	__u16 rport; /* host order */
	__u32 _pad;  /* always zero: part of the hashed key */
	__u8 raddr[SMAP_ADDR_LEN];
};

_Static_assert(sizeof(struct smap_event) == 136, "smap_event layout changed: update lib.rs");
_Static_assert(__builtin_offsetof(struct smap_event, pid) == 64, "smap_event.pid moved");
_Static_assert(__builtin_offsetof(struct smap_event, kind) == 84, "smap_event.kind moved");
_Static_assert(__builtin_offsetof(struct smap_event, saddr) == 88, "smap_event.saddr moved");
_Static_assert(__builtin_offsetof(struct smap_event, comm) == 120, "smap_event.comm moved");
_Static_assert(sizeof(struct smap_udp_key) == 32, "smap_udp_key layout changed: update lib.rs");

/* DNS payload bytes copied per reply: a stub resolver without EDNS (glibc, musl) gets
 * at most 512; larger EDNS replies are cut here, and user space keeps the answers that
 * fit. */
#define SMAP_DNS_PAYLOAD_LEN 1024
#define SMAP_DNS_HEADER_LEN 12
/* The fields before the payload. */
#define SMAP_DNS_FIXED_LEN 64

/* A DNS reply with an answer (a UDP datagram from port 53) delivered to a socket, written to the `events` ring
 * buffer; its size (1088) tells it from smap_event (136) and the wakeup marker (8).
 * Addresses and ports as in smap_event, from the packet: saddr/sport the server,
 * daddr/dport the client. */
struct smap_dns {
	__u64 ts_ns;     /* delivery time */
	__u64 cookie;    /* socket cookie of the receiving socket */
	__u32 _pad;      /* always zero */
	__u16 family;    /* AF_INET or AF_INET6 (of the packet) */
	__u16 sport;     /* server port (53) */
	__u16 dport;     /* client port */
	__u16 wire_len;  /* DNS payload bytes on the wire */
	__u16 captured;  /* of which copied into payload */
	__u16 _pad2;     /* always zero */
	__u8 saddr[SMAP_ADDR_LEN];
	__u8 daddr[SMAP_ADDR_LEN];
	__u8 payload[SMAP_DNS_PAYLOAD_LEN];
};

_Static_assert(__builtin_offsetof(struct smap_dns, payload) == SMAP_DNS_FIXED_LEN, "smap_dns.payload moved");
_Static_assert(sizeof(struct smap_dns) == 1088, "smap_dns layout changed: update lib.rs");

/* Value of the `conns` map: what the programs remember of one TCP socket between its
 * state changes and data-path runs. User space reads it at the end of a capture to
 * report the connections still open. Addresses and ports as in smap_event; family 0
 * until the tuple is known (a socket still in the handshake). */
struct conn_state {
	__u64 start_ns;          /* seen opening; 0: open before capture */
	__u64 cookie;
	__u64 cgroup_id;
	__u64 report_ns;         /* last report: open, first bytes or progress */
	__u64 bytes_sent;        /* payload bytes as of the last data-path run */
	__u64 bytes_received;
	__u64 reported_sent;     /* payload bytes as of the last report */
	__u64 reported_received;
	__u32 pid;
	__u32 netns;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u8 side;
	__u8 flags;
	__u8 saddr[SMAP_ADDR_LEN];
	__u8 daddr[SMAP_ADDR_LEN];
	char comm[SMAP_COMM_LEN];
};

_Static_assert(sizeof(struct conn_state) == 128, "conn_state layout changed: update lib.rs");

#endif
