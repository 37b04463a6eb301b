/* kernel.h: the few kernel structs smap.bpf.c reads, declared by hand for CO-RE.
 *
 * Only the fields we read are listed: preserve_access_index makes clang record each
 * access by field name, and the loader relocates it against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux), so offsets here never matter, names and sizes do. This
 * replaces a 2.8 MB generated vmlinux.h.
 */
#ifndef SMAP_KERNEL_H
#define SMAP_KERNEL_H

#include <linux/types.h>

#define __core __attribute__((preserve_access_index))

/* include/net/tcp_states.h */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10
#define TCP_CLOSING 11

/* include/uapi/asm-generic/errno.h */
#define ECONNRESET 104

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

/* Bit of sock_common.skc_flags (enum sock_flags): set by tcp_fin() when the peer's FIN
 * arrived, i.e. when bytes_received counts one sequence number that is not payload. */
#define SOCK_DONE 1

/* uapi in6_addr is a union around s6_addr (a macro): read the whole struct. */
struct in6_addr {
	__u8 u6_addr8[16];
};

typedef struct {
	__s64 counter;
} atomic64_t;

struct ns_common {
	unsigned int inum;
} __core;

struct net {
	struct ns_common ns;
} __core;

typedef struct {
	struct net *net;
} __core possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
	unsigned long skc_flags;
} __core;

struct kernfs_node {
	__u64 id;
} __core;

struct cgroup {
	struct kernfs_node *kn;
} __core;

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __core;

struct sock {
	struct sock_common __sk_common;
	struct sock_cgroup_data sk_cgrp_data;
	int sk_err;
	__u16 sk_protocol;
	__u16 sk_type;
} __core;

struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __core;

struct inet_connection_sock {
	struct inet_sock icsk_inet;
} __core;

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 write_seq;
	__u32 snd_una;
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 total_retrans;
} __core;

struct seq_file;
struct sockaddr;

struct sk_buff {
	struct sock *sk;
	unsigned int len;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	unsigned char *head;
} __core;

/* The context of iter/tcp programs (kernel/bpf/bpf_iter.c, net/ipv4/tcp_ipv4.c). */
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __core;

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
} __core;

struct socket {
	struct sock *sk;
} __core;

struct file {
	void *private_data;
} __core;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __core;

struct files_struct {
	struct fdtable *fdt;
} __core;

struct nsproxy {
	struct net *net_ns;
} __core;

struct task_struct {
	struct task_struct *group_leader;
	struct files_struct *files;
	struct nsproxy *nsproxy;
	char comm[16];
} __core;

#endif
