/* accept.bpf.h: the accept programs of smap.bpf.c (included there: one object, one set
 * of maps). The server side of a TCP connection is seen in the server's own task when
 * accept() or accept4() returns, the only place its process is known. */

/* The syscalls:sys_exit_* tracepoint record (see its format file in tracefs). */
struct sys_exit_args {
	__u64 common;
	__s32 nr;
	__s32 _pad;
	__s64 ret;
};

/* accept()/accept4() returned fd: walk fd -> file -> socket -> sock in the server's
 * task, which is the only place the server's pid is known. */
static __always_inline int on_accept_exit(struct sys_exit_args *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds;
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;
	struct fdtable *fdt;
	struct conn_state *st;
	struct smap_event *e;
	__s64 fd = ctx->ret;
	__u64 key;

	if (fd < 0)
		return 0;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	/* Unix and MPTCP sockets are accepted through the same syscall. */
	if (!sk || !is_inet_proto(sk, IPPROTO_TCP))
		return 0;
	/* Reset while it waited in the accept queue: its close was reported, or it never
	 * was established. An entry made now would never be deleted. */
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE)
		return 0;

	key = (__u64)sk;
	st = bpf_map_lookup_elem(&conns, &key);
	if (!st) {
		/* Passive open before capture, or evicted: the cookie exists only if
		 * something asked for it already. */
		struct conn_state init = {
			.cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter),
			.report_ns = bpf_ktime_get_boot_ns(),
			.side = SMAP_SIDE_SERVER,
		};

		count(SMAP_CTR_ACCEPT_UNTRACKED);
		st = conn_get_or_create(key, &init);
		if (!st)
			return 0;
	} else if (st->side == SMAP_SIDE_UNKNOWN) {
		/* Established before capture and reported already (its first bytes came
		 * before the accept()): only its owner is news. Its side stays as reported,
		 * so every report of it names the same connection. */
		st->pid = bpf_get_current_pid_tgid() >> 32;
		st->cgroup_id = bpf_get_current_cgroup_id();
		leader_comm(st->comm);
		return 0;
	}
	st->pid = bpf_get_current_pid_tgid() >> 32;
	st->cgroup_id = bpf_get_current_cgroup_id();
	st->side = SMAP_SIDE_SERVER;
	leader_comm(st->comm);

	e = reserve();
	if (!e)
		return 0;
	e->kind = SMAP_KIND_TCP_ACCEPT;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cookie = st->cookie;
	e->netns = sk_netns(sk);
	e->old_state = TCP_ESTABLISHED;
	from_state(e, st);
	sk_tuple(sk, e);
	remember_tuple(st, e);
	submit(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_sys_exit_accept4(struct sys_exit_args *ctx)
{
	return on_accept_exit(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_sys_exit_accept(struct sys_exit_args *ctx)
{
	return on_accept_exit(ctx);
}
