/* dns.bpf.h: the DNS answer program of smap.bpf.c (included there: one object, one
 * ring buffer). It copies the payload of each UDP datagram from port 53 that reaches a
 * socket and holds an answer into the ring, bounded per packet; user space parses the
 * answers. Replies without one (NXDOMAIN, NODATA) are only counted.
 *
 * A cgroup_skb/ingress program on the cgroup2 root runs for every packet delivered to
 * a socket of any process below it, in every network namespace, after NAT has been
 * undone (a reply from the cluster DNS Service carries its ClusterIP). It needs only
 * what the other cgroup hooks need, and it sees the packet, where the socket hooks see
 * addresses only. skb->data is at the network header here; bpf_skb_load_bytes reads
 * across fragments, so a reply in a non-linear skb is copied whole too (direct packet
 * access, a read of the linear part only, is used for the IP header alone). TCP DNS is not
 * copied: a reply over TCP can span segments, and stub resolvers fall back to it only
 * for answers over 512 bytes.
 */

/* Never used: puts struct smap_dns into the object's BTF (ring records are not map
 * values), where the Rust layout test reads it. */
struct smap_dns *smap_dns_layout __attribute__((unused));

#define ETH_P_IP_BE 0x0008   /* htons(ETH_P_IP) */
#define ETH_P_IPV6_BE 0xdd86 /* htons(ETH_P_IPV6) */
#define IPPROTO_UDP_NUM 17
#define DNS_PORT 53

static __always_inline int udp_from_port_53(struct __sk_buff *skb, __u32 udp_off)
{
	__be16 sport = 0;

	if (bpf_skb_load_bytes(skb, udp_off, &sport, sizeof(sport)) < 0)
		return 0;
	return sport == bpf_htons(DNS_PORT);
}

SEC("cgroup_skb/ingress")
int on_dns_reply(struct __sk_buff *skb)
{
	__u32 udp_off, payload_off, wire, len;
	__u16 family, dport = 0, udp_len = 0;
	struct smap_dns *d;
	__u8 hdr[8] = {};
	__u8 *ip = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	/* This runs for every packet a socket receives, TCP above all: the IP header is
	 * in the linear part by now (the stack pulled it), so it is read in place, without
	 * a helper call, to leave everything but UDP at once. */
	if (skb->protocol == ETH_P_IP_BE) {
		if ((void *)(ip + 20) > data_end || ip[9] != IPPROTO_UDP_NUM)
			return 1;
		udp_off = (ip[0] & 0x0f) * 4;
		family = AF_INET;
	} else if (skb->protocol == ETH_P_IPV6_BE) {
		/* Extension headers are rare on DNS replies and not followed. */
		if ((void *)(ip + 40) > data_end || ip[6] != IPPROTO_UDP_NUM)
			return 1;
		udp_off = 40;
		family = AF_INET6;
	} else {
		return 1;
	}
	if (!udp_from_port_53(skb, udp_off))
		return 1;
	if (bpf_skb_load_bytes(skb, udp_off + 2, &dport, 2) < 0 ||
	    bpf_skb_load_bytes(skb, udp_off + 4, &udp_len, 2) < 0)
		return 1;
	wire = bpf_ntohs(udp_len);
	payload_off = udp_off + 8;
	if (wire < 8 + SMAP_DNS_HEADER_LEN || payload_off >= skb->len)
		return 1;
	wire -= 8;
	len = wire;
	if (len > skb->len - payload_off)
		len = skb->len - payload_off;
	if (len > SMAP_DNS_PAYLOAD_LEN)
		len = SMAP_DNS_PAYLOAD_LEN;
	if (len < SMAP_DNS_HEADER_LEN)
		return 1;

	/* Only responses (QR) without error (RCODE 0) that hold an answer: NXDOMAIN and
	 * NODATA replies (the search-path misses of ndots:5, the AAAA of an IPv4-only
	 * name) name nothing, and each copy takes the ring space of eight connection
	 * events. */
	if (bpf_skb_load_bytes(skb, payload_off, hdr, sizeof(hdr)) < 0)
		return 1;
	if (!(hdr[2] & 0x80) || (hdr[3] & 0x0f) || (hdr[6] | hdr[7]) == 0) {
		count(SMAP_CTR_DNS_SKIPPED);
		return 1;
	}

	d = bpf_ringbuf_reserve(&events, sizeof(*d), 0);
	if (!d) {
		count(SMAP_CTR_RINGBUF_DROPS);
		return 1;
	}
	__builtin_memset(d, 0, SMAP_DNS_FIXED_LEN);
	d->ts_ns = bpf_ktime_get_boot_ns();
	d->cookie = bpf_get_socket_cookie(skb);
	d->family = family;
	d->sport = DNS_PORT;
	d->dport = bpf_ntohs(dport);
	d->wire_len = wire;
	if (family == AF_INET) {
		bpf_skb_load_bytes(skb, 12, d->saddr, 4);
		bpf_skb_load_bytes(skb, 16, d->daddr, 4);
	} else {
		bpf_skb_load_bytes(skb, 8, d->saddr, 16);
		bpf_skb_load_bytes(skb, 24, d->daddr, 16);
	}
	/* Bounded for the verifier, which needs a non-zero constant-bounded size. */
	len &= SMAP_DNS_PAYLOAD_LEN * 2 - 1;
	if (len < SMAP_DNS_HEADER_LEN || len > SMAP_DNS_PAYLOAD_LEN ||
	    bpf_skb_load_bytes(skb, payload_off, d->payload, len) < 0) {
		bpf_ringbuf_discard(d, BPF_RB_NO_WAKEUP);
		return 1;
	}
	d->captured = len;
	count(SMAP_CTR_DNS_REPLIES);
	bpf_ringbuf_submit(d, BPF_RB_NO_WAKEUP);
	return 1;
}
