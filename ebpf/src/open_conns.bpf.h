/* open_conns.bpf.h: the programs of smap.bpf.c (included there: one object, one set of
 * maps) that find TCP connections open before the capture started, and keep the bytes
 * of open ones current: the data-path tracepoints see a socket on its first segment or
 * read, and the iter/tcp program enumerates a namespace's idle sockets. */

/* tcp_probe runs for every segment an established socket receives, in softirq as a
 * rule, so the task it finds is not the socket's owner; tcp_rcv_space_adjust runs in
 * the reading task. Both ends of a connection that moves data in either direction
 * receive segments (data or acks), so tcp_probe sees every such socket. */

/* The entry for an established socket smap has not seen before, and its report. */
static __always_inline void tcp_first_seen(struct sock *sk, const struct tcp_sock *tp, __u64 now,
					   int in_task)
{
	__u64 key = (__u64)sk;
	struct conn_state init = {
		.cookie = bpf_get_socket_cookie((void *)sk),
		.cgroup_id = sk_cgroup_id(sk),
		.report_ns = now,
		.side = SMAP_SIDE_UNKNOWN,
	};
	struct conn_state *st;
	struct smap_event *e;

	if (in_task) {
		init.pid = bpf_get_current_pid_tgid() >> 32;
		leader_comm(init.comm);
	}
	/* Another CPU may be reporting the same socket: only the one that creates the
	 * entry reports it. (Without an entry, every segment would report it again.) */
	if (bpf_map_update_elem(&conns, &key, &init, BPF_NOEXIST)) {
		if (!bpf_map_lookup_elem(&conns, &key))
			count(SMAP_CTR_MAP_FULL);
		return;
	}
	count(SMAP_CTR_CONN_INSERTS);
	st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return;
	e = reserve();
	if (!e)
		return;
	e->kind = SMAP_KIND_TCP_EXISTING;
	e->ts_ns = now;
	e->cookie = init.cookie;
	e->old_state = sk->__sk_common.skc_state;
	from_state(e, st);
	tcp_tuple(sk, tp, e);
	open_bytes(sk, tp, SMAP_SIDE_UNKNOWN, &e->bytes_sent, &e->bytes_received);
	e->flags |= SMAP_FLAG_SYN_UNCERTAIN;
	e->retransmits = tp->total_retrans;
	remember_tuple(st, e);
	st->bytes_sent = st->reported_sent = e->bytes_sent;
	st->bytes_received = st->reported_received = e->bytes_received;
	count(SMAP_CTR_TCP_EXISTING);
	submit(e);
}

static __always_inline void tcp_data(struct sock *sk, int in_task)
{
	__u64 key = (__u64)sk;
	struct tcp_sock *tp;
	struct conn_state *st;
	struct smap_event *e;
	__u8 state;
	__u64 now;

	/* Runs for every segment received: plain loads and one lookup. */
	state = sk->__sk_common.skc_state;
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	now = bpf_ktime_get_boot_ns();
	st = bpf_map_lookup_elem(&conns, &key);
	if (!st) {
		tcp_first_seen(sk, tp, now, in_task);
		return;
	}
	if (in_task && !st->pid) {
		st->pid = bpf_get_current_pid_tgid() >> 32;
		if (!st->cgroup_id)
			st->cgroup_id = bpf_get_current_cgroup_id();
		leader_comm(st->comm);
	}
	open_bytes(sk, tp, st->side, &st->bytes_sent, &st->bytes_received);
	if (!st->family) {
		/* Established after a handshake seen here, before its accept(): the tuple
		 * is needed if it is still open at the end. */
		struct smap_event t = {};

		tcp_tuple(sk, tp, &t);
		remember_tuple(st, &t);
	}
	if (now - st->report_ns < progress_ns)
		return;
	if (st->bytes_sent == st->reported_sent && st->bytes_received == st->reported_received)
		return;
	st->report_ns = now;
	st->reported_sent = st->bytes_sent;
	st->reported_received = st->bytes_received;
	e = reserve();
	if (!e)
		return;
	e->kind = SMAP_KIND_TCP_PROGRESS;
	e->ts_ns = now;
	e->cookie = st->cookie;
	e->old_state = state;
	from_state(e, st);
	tcp_tuple(sk, tp, e);
	e->bytes_sent = st->bytes_sent;
	e->bytes_received = st->bytes_received;
	if (st->side == SMAP_SIDE_UNKNOWN)
		e->flags |= SMAP_FLAG_SYN_UNCERTAIN;
	e->retransmits = tp->total_retrans;
	count(SMAP_CTR_TCP_PROGRESS);
	submit(e);
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(on_tcp_probe, struct sock *sk, struct sk_buff *skb)
{
	tcp_data(sk, 0);
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(on_tcp_rcv_space_adjust, struct sock *sk)
{
	tcp_data(sk, 1);
	return 0;
}

/* Enumeration of the sockets open in the network namespace of the task that reads the
 * iterator: listeners are written as TCP_LISTEN records (so user space knows the
 * servers of connections it did not see open), established sockets absent from
 * `conns` are remembered and written as TCP_EXISTING, exactly as their first bytes
 * would have reported them. Records go to the iterator's file, not the ring buffer, so
 * a namespace with 100k sockets does not overflow it. */
SEC("iter/tcp")
int iter_tcp(struct bpf_iter__tcp *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock_common *skc = ctx->sk_common;
	struct conn_state init = {};
	struct smap_event e = {};
	struct tcp_sock *tp;
	struct sock *sk;
	__u64 key;
	__u8 state;

	if (!skc)
		return 0;
	/* NULL for request and time-wait sockets, which are no connection yet or any more. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	sk = (struct sock *)tp;
	state = sk->__sk_common.skc_state;
	e.ts_ns = bpf_ktime_get_boot_ns();
	e.cookie = bpf_get_socket_cookie(sk);
	e.old_state = state;
	tcp_tuple(sk, tp, &e);
	if (state == TCP_LISTEN) {
		e.kind = SMAP_KIND_TCP_LISTEN;
		e.side = SMAP_SIDE_SERVER;
		bpf_seq_write(seq, &e, sizeof(e));
		return 0;
	}
	if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT)
		return 0;
	key = (__u64)sk;
	init.cookie = e.cookie;
	init.cgroup_id = e.cgroup_id = sk_cgroup_id(sk);
	init.report_ns = e.ts_ns;
	init.side = SMAP_SIDE_UNKNOWN;
	open_bytes(sk, tp, SMAP_SIDE_UNKNOWN, &e.bytes_sent, &e.bytes_received);
	init.bytes_sent = init.reported_sent = e.bytes_sent;
	init.bytes_received = init.reported_received = e.bytes_received;
	remember_tuple(&init, &e);
	/* Known already (seen opening, or its bytes were seen first): reported. */
	if (bpf_map_lookup_elem(&conns, &key))
		return 0;
	e.kind = SMAP_KIND_TCP_EXISTING;
	e.flags = SMAP_FLAG_SYN_UNCERTAIN;
	e.retransmits = tp->total_retrans;
	/* A record that does not fit the iterator's buffer fails here and the kernel runs
	 * this program again on the same socket: remember it only once it is written. */
	if (bpf_seq_write(seq, &e, sizeof(e)))
		return 0;
	/* The data path may have reported it meanwhile: user space joins the two. Without
	 * a free entry (the LRU map cannot always steal one under a burst of inserts) its
	 * next bytes report it again, joined likewise. */
	if (bpf_map_update_elem(&conns, &key, &init, BPF_NOEXIST) == 0)
		count(SMAP_CTR_CONN_INSERTS);
	else if (!bpf_map_lookup_elem(&conns, &key))
		count(SMAP_CTR_MAP_FULL);
	return 0;
}
