/* smap.bpf.c: kernel programs reporting TCP connects, accepts, closes, failed connects
 * and UDP flows, with the owning process, network namespace and payload bytes.
 *
 * Built by ebpf/build.sh into the committed ebpf/smap.bpf.o; loaded by smap-capture.
 *
 * TCP: every transition of sock:inet_sock_set_state (tp_btf) keeps or reads an entry
 * in `conns`, keyed by the struct sock address, that remembers who opened the socket:
 * CLOSE->SYN_SENT runs in the connect()ing task (pid, comm) before the source port is
 * chosen; SYN_SENT->ESTABLISHED has the full tuple but runs in softirq, so the two are
 * joined here. accept() is seen at syscall exit, in the server's task (accept.bpf.h).
 * Any state -> CLOSE reports the socket's lifetime payload bytes.
 *
 * Connections that were open before capture (open_conns.bpf.h): the data-path
 * tracepoints (tcp_probe on every segment an established socket receives,
 * tcp_rcv_space_adjust on every read) find a socket absent from `conns`, remember it
 * and report it once (TCP_EXISTING);
 * the iter/tcp program finds the idle ones when user space runs it in a namespace.
 * The same data-path runs keep each entry's byte counters current and report a
 * connection that moved bytes at most once per progress_ns (TCP_PROGRESS).
 *
 * UDP (udp.bpf.h): each datagram sent or received, and each connect(), counts on its
 * flow in `udp_flows`, which user space reads and ages; no per-datagram event leaves
 * the kernel.
 *
 * DNS (dns.bpf.h): the payload of each reply from port 53 delivered to a socket goes
 * to the ring, bounded, for user space to parse.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "kernel.h"
#include "smap.h"

char LICENSE[] SEC("license") = "GPL";

/* Knobs user space may override before loading (EbpfLoader::override_global). */
/* Wake the reader once this many bytes are pending: per-event wakeups halve connection
 * throughput; the reader also drains on a timer. */
volatile const __u64 wakeup_bytes = 64 * 1024;
/* An open connection that moved bytes is reported again (SMAP_KIND_TCP_PROGRESS) at
 * most this often. */
volatile const __u64 progress_ns = 10ULL * 1000000000;

/* Ring-buffer producer position at the last wakeup, shared by all CPUs (a lost race
 * costs one wakeup too many or too few, and the timer drains anyway). */
__u64 last_wake_pos = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024); /* bytes; user space may override */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* max_connections, overridable */
	__type(key, __u64);         /* struct sock address */
	__type(value, struct conn_state);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* max_connections, overridable */
	__type(key, struct smap_udp_key);
	__type(value, struct smap_event);
} udp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SMAP_CTR_LEN);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no other writer */
}

/* Commits an event without waking the reader: wakeups come from wake_reader below,
 * never from a program whose lost runs would lose events. */
static __always_inline void submit(struct smap_event *e)
{
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline struct smap_event *reserve(void)
{
	struct smap_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(SMAP_CTR_RINGBUF_DROPS);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	return e;
}

/* The thread-group leader's comm: a server's accepting thread is often named after a
 * pool ("tokio-runtime-w", "http-nio-8080-e"), the process is what identifies it. */
static __always_inline void leader_comm(char *comm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	if (!leader || bpf_core_read_str(comm, SMAP_COMM_LEN, &leader->comm) < 0)
		bpf_get_current_comm(comm, SMAP_COMM_LEN);
}

/* The cgroup v2 id of the process that created the socket (for an accepted one, its
 * listener's), as bpf_get_current_cgroup_id() gives a task's: what tells a hostNetwork
 * pod's connections from its node's where no task of the owner is at hand (softirq, the
 * iterator). 0 on kernels without socket cgroup data. */
static __always_inline __u64 sk_cgroup_id(const struct sock *sk)
{
	/* Before 5.15 sock_cgroup_data is a union without this member. */
	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* Local and remote address, ports and family of a TCP or UDP socket. The local port is
 * read from inet_sport: skc_num is already zero when a socket reaches CLOSE. */
static __always_inline void sk_tuple(const struct sock *sk, struct smap_event *e)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	e->family = family;
	e->sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__be32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO((struct in6_addr *)e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)e->daddr, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline int is_inet_proto(const struct sock *sk, __u16 proto)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	return (family == AF_INET || family == AF_INET6) && BPF_CORE_READ(sk, sk_protocol) == proto;
}

/* Creates the entry for a socket unless one exists; returns it either way. */
static __always_inline struct conn_state *conn_get_or_create(__u64 key, struct conn_state *init)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);

	if (st)
		return st;
	if (bpf_map_update_elem(&conns, &key, init, BPF_NOEXIST) == 0)
		count(SMAP_CTR_CONN_INSERTS);
	st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		count(SMAP_CTR_MAP_FULL);
	return st;
}

/* Starts the entry of a socket that is just opening. An entry already there belongs to
 * a freed socket whose CLOSE this program missed (the kernel skips nested runs) and
 * whose memory the new one reuses: overwrite it, without counting a new entry. */
static __always_inline void conn_start(__u64 key, struct conn_state *init)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);

	if (st) {
		*st = *init;
		return;
	}
	if (bpf_map_update_elem(&conns, &key, init, BPF_NOEXIST) == 0)
		count(SMAP_CTR_CONN_INSERTS);
	else if (!bpf_map_lookup_elem(&conns, &key))
		count(SMAP_CTR_MAP_FULL);
}

static __always_inline void conn_delete(__u64 key)
{
	if (bpf_map_delete_elem(&conns, &key) == 0)
		count(SMAP_CTR_CONN_DELETES);
}

/* The tuple of a reported socket, kept for the report of connections still open at
 * the end of a capture. */
static __always_inline void remember_tuple(struct conn_state *st, const struct smap_event *e)
{
	st->family = e->family;
	st->sport = e->sport;
	st->dport = e->dport;
	st->netns = e->netns;
	__builtin_memcpy(st->saddr, e->saddr, SMAP_ADDR_LEN);
	__builtin_memcpy(st->daddr, e->daddr, SMAP_ADDR_LEN);
}

static __always_inline void from_state(struct smap_event *e, const struct conn_state *st)
{
	e->start_ns = st->start_ns;
	e->cgroup_id = st->cgroup_id;
	e->pid = st->pid;
	e->side = st->side;
	__builtin_memcpy(e->comm, st->comm, SMAP_COMM_LEN);
}

/* --- TCP state changes --------------------------------------------------------------
 *
 * This program runs on every TCP state change of the host, and the kernel never runs
 * it nested: if an interrupt's softirq changes a socket's state on a CPU where it is
 * already running (in a task's connect() or close()), that change is skipped and
 * counted as a recursion miss of the program (bpf_prog_info.recursion_misses, which
 * user space reports). So it spends as little time as it can: transitions it ignores
 * return before any memory access, and fields are read with plain loads through the
 * BTF-typed pointers the tracepoint hands over, not with probe-read helper calls.
 */

static __always_inline void tcp_tuple(const struct sock *sk, const struct tcp_sock *tp,
				      struct smap_event *e)
{
	__u16 family = sk->__sk_common.skc_family;

	e->family = family;
	/* skc_num is already zero at CLOSE; inet_sport is not. */
	e->sport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	e->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		__be32 s = sk->__sk_common.skc_rcv_saddr;
		__be32 d = sk->__sk_common.skc_daddr;

		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
	} else {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_v6_rcv_saddr, SMAP_ADDR_LEN);
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_v6_daddr, SMAP_ADDR_LEN);
	}
	e->netns = sk->__sk_common.skc_net.net->ns.inum;
}

/* Payload bytes of an open socket. bytes_acked counts the active opener's SYN;
 * bytes_received counts the peer's FIN once it arrived (tcp_fin() sets SOCK_DONE). A
 * socket whose side is unknown keeps the SYN in and says so: the difference of two
 * reports of one socket is exact either way. */
static __always_inline void open_bytes(const struct sock *sk, const struct tcp_sock *tp, __u8 side,
				       __u64 *sent, __u64 *received)
{
	__u64 acked = tp->bytes_acked;
	__u64 rcvd = tp->bytes_received;

	if (side == SMAP_SIDE_CLIENT && acked > 0)
		acked -= 1;
	if ((sk->__sk_common.skc_flags & (1UL << SOCK_DONE)) && rcvd > 0)
		rcvd -= 1;
	*sent = acked;
	*received = rcvd;
}

/* Payload bytes of a closing socket: as open_bytes, less our FIN, which is in
 * write_seq from the moment it is queued (only in the FIN_WAIT1, FIN_WAIT2, CLOSING and
 * LAST_ACK states) and was acked if snd_una reached write_seq. */
static __always_inline void close_bytes(const struct sock *sk, const struct tcp_sock *tp,
					int oldstate, struct smap_event *e)
{
	open_bytes(sk, tp, e->side, &e->bytes_sent, &e->bytes_received);
	if ((oldstate == TCP_FIN_WAIT1 || oldstate == TCP_FIN_WAIT2 || oldstate == TCP_CLOSING ||
	     oldstate == TCP_LAST_ACK) &&
	    tp->snd_una == tp->write_seq && e->bytes_sent > 0)
		e->bytes_sent -= 1;
	if (e->side == SMAP_SIDE_UNKNOWN)
		e->flags |= SMAP_FLAG_SYN_UNCERTAIN;
	e->retransmits = tp->total_retrans;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	struct tcp_sock *tp;
	struct conn_state *st;
	struct smap_event *e;

	switch (newstate) {
	case TCP_SYN_SENT:
	case TCP_SYN_RECV:
	case TCP_ESTABLISHED:
	case TCP_LISTEN:
	case TCP_CLOSE:
		break;
	default:
		return 0; /* FIN_WAIT*, CLOSE_WAIT, LAST_ACK...: nothing to record */
	}
	/* NULL for MPTCP and SCTP sockets, which share the tracepoint. */
	tp = bpf_skc_to_tcp_sock((void *)sk);
	if (!tp)
		return 0;

	if (newstate == TCP_SYN_SENT) {
		/* connect(): the caller's task, before the source port exists. */
		struct task_struct *task = bpf_get_current_task_btf();
		struct conn_state init = {
			.start_ns = bpf_ktime_get_boot_ns(),
			.cookie = bpf_get_socket_cookie((void *)sk),
			.cgroup_id = bpf_get_current_cgroup_id(),
			.pid = bpf_get_current_pid_tgid() >> 32,
			.side = SMAP_SIDE_CLIENT,
		};

		init.report_ns = init.start_ns;
		/* The process's name, not the calling thread's (often a pool worker's). */
		__builtin_memcpy(init.comm, task->group_leader->comm, SMAP_COMM_LEN);
		conn_start(key, &init);
		return 0;
	}

	if (newstate == TCP_SYN_RECV || (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_RECV)) {
		/* A passive open: softirq, no owner yet; accept() fills it in. The child is
		 * born in SYN_RECV; ESTABLISHED only creates the entry if that was missed. */
		struct conn_state init = {
			.start_ns = bpf_ktime_get_boot_ns(),
			.cookie = bpf_get_socket_cookie((void *)sk),
			.side = SMAP_SIDE_SERVER,
		};

		init.report_ns = init.start_ns;
		if (newstate == TCP_SYN_RECV) {
			conn_start(key, &init);
		} else {
			struct conn_state *st = conn_get_or_create(key, &init);

			/* Up to 6.1 the child gets its cookie from the request socket after
			 * it entered SYN_RECV (inet_csk_clone_lock), replacing the one made
			 * there; by ESTABLISHED it is final. */
			if (st)
				st->cookie = init.cookie;
		}
		return 0;
	}

	if (newstate == TCP_LISTEN) {
		struct task_struct *task = bpf_get_current_task_btf();

		e = reserve();
		if (!e)
			return 0;
		e->kind = SMAP_KIND_TCP_LISTEN;
		e->ts_ns = bpf_ktime_get_boot_ns();
		e->cookie = bpf_get_socket_cookie((void *)sk);
		e->cgroup_id = bpf_get_current_cgroup_id();
		e->pid = bpf_get_current_pid_tgid() >> 32;
		e->side = SMAP_SIDE_SERVER;
		e->old_state = oldstate;
		__builtin_memcpy(e->comm, task->group_leader->comm, SMAP_COMM_LEN);
		tcp_tuple(sk, tp, e);
		submit(e);
		return 0;
	}

	if (newstate == TCP_ESTABLISHED) {
		/* oldstate is SYN_SENT: the active open completed (softirq). */
		struct conn_state init = {
			.cookie = bpf_get_socket_cookie((void *)sk),
			.side = SMAP_SIDE_CLIENT,
		};

		st = bpf_map_lookup_elem(&conns, &key);
		if (!st) {
			/* connect() began before capture, or its entry was evicted. */
			count(SMAP_CTR_CONNECT_UNTRACKED);
			st = conn_get_or_create(key, &init);
		}
		e = reserve();
		if (!e)
			return 0;
		e->kind = SMAP_KIND_TCP_CONNECT;
		e->ts_ns = bpf_ktime_get_boot_ns();
		e->cookie = init.cookie;
		e->side = SMAP_SIDE_CLIENT;
		e->old_state = oldstate;
		if (st)
			from_state(e, st);
		tcp_tuple(sk, tp, e);
		if (st) {
			remember_tuple(st, e);
			st->report_ns = e->ts_ns;
		}
		submit(e);
		return 0;
	}

	/* newstate == TCP_CLOSE. A listener closing, or a half-open passive socket dropped
	 * before accept: no connection was reported for either. */
	if (oldstate == TCP_LISTEN || oldstate == TCP_SYN_RECV || oldstate == TCP_CLOSE) {
		conn_delete(key);
		return 0;
	}

	st = bpf_map_lookup_elem(&conns, &key);
	e = reserve();
	if (!e) {
		conn_delete(key);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cookie = bpf_get_socket_cookie((void *)sk);
	e->old_state = oldstate;
	if (st)
		from_state(e, st);
	else
		count(SMAP_CTR_CLOSE_UNTRACKED);
	tcp_tuple(sk, tp, e);
	if (oldstate == TCP_SYN_SENT) {
		/* tcp_done_with_error() stores sk_err before the state changes. */
		e->kind = SMAP_KIND_TCP_CONNECT_FAILED;
		e->side = SMAP_SIDE_CLIENT;
		e->error = sk->sk_err;
	} else {
		e->kind = SMAP_KIND_TCP_CLOSE;
		close_bytes(sk, tp, oldstate, e);
		/* An established connection that ended without the FIN exchange was aborted:
		 * a reset received (tcp_reset stores ECONNRESET, or EPIPE in CLOSE_WAIT,
		 * before the state changes), a retransmission timeout (ETIMEDOUT), or a reset
		 * this end sent (SO_LINGER 0, unread data at close), which goes straight from
		 * ESTABLISHED or CLOSE_WAIT to CLOSE without an error. */
		e->error = sk->sk_err;
		if (!e->error && (oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT))
			e->error = ECONNRESET;
	}
	conn_delete(key);
	submit(e);
	return 0;
}

/* Wakes the reader when wakeup_bytes are pending, with an 8-byte marker record that
 * user space skips.
 *
 * A wakeup is an irq_work self-interrupt, delivered at once; the softirqs run on its
 * way out can change another socket's state on this CPU. Done inside
 * on_inet_sock_set_state, that nested state change would find the program still running
 * and be skipped by the kernel (measured: about one lost close per wakeup under load).
 * From this separate program on the same tracepoint, the nested change runs
 * on_inet_sock_set_state normally, and only a nested run of this program is skipped,
 * which loses nothing. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(wake_reader, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 prod, cons, marker = 0;

	/* Only these changes record an event. Skipping the other seven of a connection's
	 * ten delays no wake-up past the next of these or the reader's 50 ms timer. */
	if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE && newstate != TCP_LISTEN)
		return 0;
	prod = bpf_ringbuf_query(&events, BPF_RB_PROD_POS);
	cons = bpf_ringbuf_query(&events, BPF_RB_CONS_POS);
	if (prod - cons < wakeup_bytes || prod - last_wake_pos < wakeup_bytes)
		return 0;
	last_wake_pos = prod;
	bpf_ringbuf_output(&events, &marker, sizeof(marker), BPF_RB_FORCE_WAKEUP);
	return 0;
}

/* --- Open connections: first bytes, progress, enumeration --------------------------- */

#include "open_conns.bpf.h"

/* --- accept() ---------------------------------------------------------------------- */

#include "accept.bpf.h"

/* --- UDP ---------------------------------------------------------------------------- */

#include "udp.bpf.h"

/* --- DNS ---------------------------------------------------------------------------- */

#include "dns.bpf.h"
