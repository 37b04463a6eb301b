/* udp.bpf.h: the UDP programs of smap.bpf.c (included there: one object, one set of
 * maps). UDP has no connection to follow, so flows are aggregated in `udp_flows`, one
 * entry per (socket, peer), which user space reads and ages.
 *
 * connect() of a UDP socket is seen by the cgroup connect hooks, on every kernel. The
 * datagrams are seen by one of two sets of programs; user space attaches the first
 * that the kernel allows, never both:
 * - functions: on entry to ip_send_skb / ip6_send_skb, which every UDP send reaches
 *   with its IP and UDP headers built (the source address the route chose, even for an
 *   unbound socket; the destination before DNAT, as the application addressed it), and
 *   to skb_consume_udp, which udp_recvmsg and udpv6_recvmsg call once per datagram
 *   handed to the application, in its task, with the packet's headers. fentry programs
 *   on functions with the same arguments from Linux 5.x to 6.18; kernels in lockdown
 *   refuse fentry.
 * - tracepoints: the cgroup sendmsg/recvmsg hooks see each unconnected datagram's peer,
 *   and sock:sock_{send,recv}_length (Linux 6.4+) its bytes and those of connected
 *   sockets. These see no packet, so an unbound socket's local address stays unknown
 *   here (user space fills it in where it can).
 *
 * An IPv6 socket talking IPv4 (dual-stack, v4-mapped addresses) is keyed as IPv4 by
 * both sets, as its packets are, so the receive and the reply of one exchange are one
 * flow, not two flows of opposite sides.
 */

#define UDP_DIR_CONNECT 0
#define UDP_DIR_SEND 1
#define UDP_DIR_RECV 2

/* Which hook saw the last datagram of a task, so the length tracepoint that follows in
 * the same syscall can add its bytes to the right flow. */
struct udp_pending {
	struct smap_udp_key key;
	__u32 dir;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192); /* tasks inside a send/recv syscall at once */
	__type(key, __u64);        /* pid_tgid */
	__type(value, struct udp_pending);
} udp_pending SEC(".maps");

#define ETH_P_IP 0x0800

/* Fixed wire layouts (not kernel-internal): read with plain probe reads, no CO-RE. */
struct smap_iphdr {
	__u8 ihl_version;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct smap_ipv6hdr {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	struct in6_addr saddr;
	struct in6_addr daddr;
};

struct smap_udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__be16 check;
};

/* One datagram's two ends, as seen from the socket: local and remote. */
struct udp_ends {
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u8 laddr[SMAP_ADDR_LEN];
	__u8 raddr[SMAP_ADDR_LEN];
};

/* Reads the IP and UDP headers of skb. An outgoing datagram's source is the local end;
 * an incoming one's destination is. */
static __always_inline int udp_ends_of(struct sk_buff *skb, __u16 family, int outgoing, struct udp_ends *out)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	struct smap_udphdr uh;

	if (bpf_probe_read_kernel(&uh, sizeof(uh), head + th))
		return -1;
	out->family = family;
	out->lport = bpf_ntohs(outgoing ? uh.source : uh.dest);
	out->rport = bpf_ntohs(outgoing ? uh.dest : uh.source);
	if (family == AF_INET) {
		struct smap_iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return -1;
		__builtin_memcpy(out->laddr, outgoing ? &ip.saddr : &ip.daddr, 4);
		__builtin_memcpy(out->raddr, outgoing ? &ip.daddr : &ip.saddr, 4);
	} else {
		struct smap_ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return -1;
		__builtin_memcpy(out->laddr, outgoing ? &ip6.saddr : &ip6.daddr, SMAP_ADDR_LEN);
		__builtin_memcpy(out->raddr, outgoing ? &ip6.daddr : &ip6.saddr, SMAP_ADDR_LEN);
	}
	return 0;
}

static __always_inline int is_udp(const struct sock *sk)
{
	return sk && BPF_CORE_READ(sk, sk_protocol) == IPPROTO_UDP;
}

/* Returns the flow of key, creating it with the calling task as owner. */
static __always_inline struct smap_event *flow_get_or_create(struct smap_udp_key *key, __u8 side,
							     __u32 netns)
{
	struct smap_event *f = bpf_map_lookup_elem(&udp_flows, key);
	struct smap_event init = {};

	if (f)
		return f;
	init.kind = SMAP_KIND_UDP_FLOW;
	init.side = side;
	init.start_ns = bpf_ktime_get_boot_ns();
	init.ts_ns = init.start_ns;
	init.cookie = key->cookie;
	init.cgroup_id = bpf_get_current_cgroup_id();
	init.pid = bpf_get_current_pid_tgid() >> 32;
	init.netns = netns;
	init.family = key->family;
	init.dport = key->rport;
	__builtin_memcpy(init.daddr, key->raddr, SMAP_ADDR_LEN);
	leader_comm(init.comm);
	if (bpf_map_update_elem(&udp_flows, key, &init, BPF_NOEXIST) == 0)
		count(SMAP_CTR_UDP_FLOW_INSERTS);
	f = bpf_map_lookup_elem(&udp_flows, key);
	if (!f)
		count(SMAP_CTR_MAP_FULL);
	return f;
}

static __always_inline int addr_is_zero(const __u8 *a)
{
	__u64 hi, lo;

	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	return !hi && !lo;
}

/* Rewrites a v4-mapped IPv6 address (::ffff:a.b.c.d) as IPv4 in place; returns whether
 * it did. */
static __always_inline int v4mapped_to_v4(__u16 *family, __u8 *addr)
{
	__u32 w[4];

	if (*family != AF_INET6)
		return 0;
	__builtin_memcpy(w, addr, sizeof(w));
	if (w[0] || w[1] || w[2] != bpf_htonl(0xffff))
		return 0;
	*family = AF_INET;
	__builtin_memcpy(addr, &w[3], 4);
	__builtin_memset(addr + 4, 0, SMAP_ADDR_LEN - 4);
	return 1;
}

/* --- connect(), and datagrams seen by cgroup hooks and tracepoints --------------- */

/* The calling task's network namespace: the cgroup hooks get a struct bpf_sock, from
 * which the socket's own namespace cannot be read. A socket lives in the namespace its
 * creator was in, so the two differ only for a task that changed namespace since. */
static __always_inline __u32 task_netns(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
}

/* Local address of a cgroup-hook socket; filled late because an unbound socket only
 * gets its port when it first sends or connects. */
static __always_inline void flow_local_from_bpf_sock(struct smap_event *f, struct bpf_sock *sk)
{
	if (f->sport)
		return;
	f->sport = sk->src_port;
	if (f->family == AF_INET) {
		__u32 a = sk->src_ip4;

		__builtin_memcpy(f->saddr, &a, 4);
	} else {
		__u32 a[4] = {sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3]};

		__builtin_memcpy(f->saddr, a, SMAP_ADDR_LEN);
	}
}

/* Peer address from a sock_addr hook: the destination for connect and sendmsg, the
 * source of the datagram for recvmsg. family is a constant per program: the verifier
 * rejects user_ip6 reads in the IPv4 hooks, so the other branch must compile away. */
static __always_inline int udp_key_from_ctx(struct bpf_sock_addr *ctx, struct smap_udp_key *key,
					    __u16 family)
{
	__builtin_memset(key, 0, sizeof(*key));
	if (ctx->user_family != family)
		return -1;
	key->cookie = bpf_get_socket_cookie(ctx);
	key->rport = bpf_ntohs((__u16)ctx->user_port);
	key->family = family;
	if (family == AF_INET) {
		__u32 a = ctx->user_ip4;

		__builtin_memcpy(key->raddr, &a, 4);
	} else {
		__u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};

		__builtin_memcpy(key->raddr, a, SMAP_ADDR_LEN);
		v4mapped_to_v4(&key->family, key->raddr);
	}
	return 0;
}

static __always_inline void udp_hook(struct bpf_sock_addr *ctx, __u32 dir, __u16 family)
{
	struct smap_udp_key key;
	struct udp_pending pending = {};
	struct smap_event *f;
	struct bpf_sock *sk = ctx->sk;
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (!sk || sk->protocol != IPPROTO_UDP || udp_key_from_ctx(ctx, &key, family))
		return;
	f = flow_get_or_create(&key, dir == UDP_DIR_RECV ? SMAP_SIDE_SERVER : SMAP_SIDE_CLIENT,
			       task_netns());
	if (!f)
		return;
	flow_local_from_bpf_sock(f, sk);
	f->ts_ns = bpf_ktime_get_boot_ns();
	if (dir == UDP_DIR_SEND)
		__sync_fetch_and_add(&f->datagrams_sent, 1);
	else if (dir == UDP_DIR_RECV)
		__sync_fetch_and_add(&f->datagrams_received, 1);
	else
		return; /* connect(): the flow exists now, nothing moved yet */
	pending.key = key;
	pending.dir = dir;
	bpf_map_update_elem(&udp_pending, &pid_tgid, &pending, BPF_ANY);
}

SEC("cgroup/connect4")
int on_connect4(struct bpf_sock_addr *ctx)
{
	udp_hook(ctx, 0, AF_INET);
	return 1; /* observe only: never deny */
}

SEC("cgroup/connect6")
int on_connect6(struct bpf_sock_addr *ctx)
{
	udp_hook(ctx, 0, AF_INET6);
	return 1;
}

SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx)
{
	udp_hook(ctx, UDP_DIR_SEND, AF_INET);
	return 1;
}

SEC("cgroup/sendmsg6")
int on_sendmsg6(struct bpf_sock_addr *ctx)
{
	udp_hook(ctx, UDP_DIR_SEND, AF_INET6);
	return 1;
}

SEC("cgroup/recvmsg4")
int on_recvmsg4(struct bpf_sock_addr *ctx)
{
	udp_hook(ctx, UDP_DIR_RECV, AF_INET);
	return 1;
}

SEC("cgroup/recvmsg6")
int on_recvmsg6(struct bpf_sock_addr *ctx)
{
	udp_hook(ctx, UDP_DIR_RECV, AF_INET6);
	return 1;
}

/* Bytes of one UDP send or receive, right after the protocol handler returned. If a
 * cgroup hook of this task just saw the datagram's peer, the bytes go to that flow;
 * otherwise the socket is connected and its peer is in the socket (the hooks do not run
 * for sends and receives without an address, so the datagram is counted here). */
static __always_inline void udp_length(struct sock *sk, int len, __u32 dir)
{
	struct smap_udp_key key = {};
	struct udp_pending *p;
	struct smap_event *f;
	__u64 pid_tgid;
	__u64 cookie;
	__u16 family;

	/* Runs for every send and receive on the host: filter with plain loads first. */
	if (len <= 0 || sk->sk_protocol != IPPROTO_UDP)
		return;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return;
	pid_tgid = bpf_get_current_pid_tgid();
	cookie = bpf_get_socket_cookie(sk);
	p = bpf_map_lookup_elem(&udp_pending, &pid_tgid);
	if (p && p->key.cookie == cookie && p->dir == dir) {
		f = bpf_map_lookup_elem(&udp_flows, &p->key);
		bpf_map_delete_elem(&udp_pending, &pid_tgid);
		if (!f)
			return;
	} else {
		struct smap_event t = {};

		if (sk->__sk_common.skc_state != TCP_ESTABLISHED)
			return; /* unconnected, and its hook is not attached */
		sk_tuple(sk, &t);
		if (v4mapped_to_v4(&t.family, t.daddr)) {
			__u16 local_family = AF_INET6;

			v4mapped_to_v4(&local_family, t.saddr);
		}
		key.cookie = cookie;
		key.family = t.family;
		key.rport = t.dport;
		__builtin_memcpy(key.raddr, t.daddr, SMAP_ADDR_LEN);
		f = flow_get_or_create(&key, dir == UDP_DIR_RECV ? SMAP_SIDE_SERVER : SMAP_SIDE_CLIENT,
				       sk_netns(sk));
		if (!f)
			return;
		if (!f->sport) {
			f->sport = t.sport;
			__builtin_memcpy(f->saddr, t.saddr, SMAP_ADDR_LEN);
		}
		if (dir == UDP_DIR_SEND)
			__sync_fetch_and_add(&f->datagrams_sent, 1);
		else
			__sync_fetch_and_add(&f->datagrams_received, 1);
	}
	f->ts_ns = bpf_ktime_get_boot_ns();
	f->flags |= SMAP_FLAG_UDP_BYTES;
	if (dir == UDP_DIR_SEND)
		__sync_fetch_and_add(&f->bytes_sent, len);
	else
		__sync_fetch_and_add(&f->bytes_received, len);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_sock_send_length, struct sock *sk, int ret, int flags)
{
	udp_length(sk, ret, UDP_DIR_SEND);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_sock_recv_length, struct sock *sk, int ret, int flags)
{
	udp_length(sk, ret, UDP_DIR_RECV);
	return 0;
}

/* --- datagrams, seen by kernel functions ---------------------------------------- */

/* Counts one datagram on the flow of ends. The local end is taken from the first
 * datagram that names one: an unbound socket gets its port on its first send. */
static __always_inline void udp_count(struct sock *sk, struct udp_ends *ends, __u32 dir, __s64 bytes)
{
	struct smap_udp_key key = {};
	struct smap_event *f;

	key.cookie = bpf_get_socket_cookie(sk);
	key.family = ends->family;
	key.rport = ends->rport;
	__builtin_memcpy(key.raddr, ends->raddr, SMAP_ADDR_LEN);
	f = flow_get_or_create(&key, dir == UDP_DIR_RECV ? SMAP_SIDE_SERVER : SMAP_SIDE_CLIENT, sk_netns(sk));
	if (!f)
		return;
	if (!f->sport || addr_is_zero(f->saddr)) {
		f->sport = ends->lport;
		__builtin_memcpy(f->saddr, ends->laddr, SMAP_ADDR_LEN);
	}
	f->ts_ns = bpf_ktime_get_boot_ns();
	f->flags |= SMAP_FLAG_UDP_BYTES;
	if (dir == UDP_DIR_SEND) {
		__sync_fetch_and_add(&f->datagrams_sent, 1);
		__sync_fetch_and_add(&f->bytes_sent, bytes);
	} else {
		__sync_fetch_and_add(&f->datagrams_received, 1);
		__sync_fetch_and_add(&f->bytes_received, bytes);
	}
}

/* One outgoing datagram. skb->data is at the IP header here, so the payload is what
 * follows the UDP header; a UDP_SEGMENT (GSO) send counts as one datagram. */
static __always_inline void udp_sent(struct sk_buff *skb, __u16 family)
{
	/* A direct load keeps sk a kernel pointer the cookie helper accepts. */
	struct sock *sk = skb->sk;
	struct udp_ends ends = {};
	__s64 payload;

	/* ip_send_skb also sends raw and ICMP sockets' packets. */
	if (!is_udp(sk) || udp_ends_of(skb, family, 1, &ends))
		return;
	payload = (__s64)BPF_CORE_READ(skb, len) -
		  ((__s64)BPF_CORE_READ(skb, transport_header) - BPF_CORE_READ(skb, network_header)) -
		  (__s64)sizeof(struct smap_udphdr);
	if (payload < 0)
		return;
	udp_count(sk, &ends, UDP_DIR_SEND, payload);
}

SEC("fentry/ip_send_skb")
int BPF_PROG(on_ip_send_skb, struct net *net, struct sk_buff *skb)
{
	udp_sent(skb, AF_INET);
	return 0;
}

SEC("fentry/ip6_send_skb")
int BPF_PROG(on_ip6_send_skb, struct sk_buff *skb)
{
	udp_sent(skb, AF_INET6);
	return 0;
}

/* One datagram handed to the application: len is what recvmsg returns, negative when
 * the application only peeked (the datagram is counted when it is really read). */
SEC("fentry/skb_consume_udp")
int BPF_PROG(on_skb_consume_udp, struct sock *sk, struct sk_buff *skb, int len)
{
	struct udp_ends ends = {};
	__u16 family;

	if (len < 0 || !is_udp(sk))
		return 0;
	/* A dual-stack socket receives IPv4 datagrams too: the packet says which. */
	family = BPF_CORE_READ(skb, protocol) == bpf_htons(ETH_P_IP) ? AF_INET : AF_INET6;
	if (udp_ends_of(skb, family, 0, &ends))
		return 0;
	udp_count(sk, &ends, UDP_DIR_RECV, len);
	return 0;
}
