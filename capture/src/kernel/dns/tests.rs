//! The DNS reply parser on real wire-format messages, cut ones, and random bytes.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use proptest::prelude::*;
use simple_dns::rdata::{RData, A, AAAA, CNAME};
use simple_dns::{Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

use super::*;

fn record<'a>(owner: &'a str, ttl: u32, rdata: RData<'a>) -> ResourceRecord<'a> {
    ResourceRecord::new(Name::new_unchecked(owner), CLASS::IN, ttl, rdata)
}

fn a(ip: [u8; 4]) -> RData<'static> {
    RData::A(A { address: u32::from(Ipv4Addr::from(ip)) })
}

/// A reply to `query` with these answers, in wire format.
fn reply(query: &str, answers: Vec<ResourceRecord<'_>>) -> Vec<u8> {
    let mut packet = Packet::new_reply(7);
    packet.set_flags(PacketFlag::RESPONSE);
    packet.questions.push(Question::new(
        Name::new_unchecked(query),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.answers = answers;
    packet.build_bytes_vec().unwrap()
}

fn resolved(query: &str, cnames: &[&str], address: &str, ttl_s: u32) -> Resolved {
    Resolved {
        query: query.to_owned(),
        cnames: cnames.iter().map(|c| (*c).to_owned()).collect(),
        address: address.parse().unwrap(),
        ttl_s,
    }
}

#[test]
fn addresses_carry_the_name_asked_for_its_cname_chain_and_the_lowest_ttl() {
    let wire = reply(
        "API.Payments.example",
        vec![
            record("api.payments.example", 300, RData::CNAME(CNAME(Name::new_unchecked("edge.cdn.example")))),
            record("edge.cdn.example", 60, RData::CNAME(CNAME(Name::new_unchecked("pop1.cdn.example")))),
            record("pop1.cdn.example", 120, a([203, 0, 113, 20])),
            record("pop1.cdn.example", 20, a([203, 0, 113, 21])),
            record("pop1.cdn.example", 120, RData::AAAA(AAAA { address: 0x2001_0db8_u128 << 96 | 1 })),
            // Not on the chain: an unrelated record in the answer section.
            record("other.example", 120, a([198, 51, 100, 1])),
        ],
    );
    let chain = ["edge.cdn.example", "pop1.cdn.example"];
    assert_eq!(
        parse(&wire, false),
        Reply::Answers(vec![
            resolved("api.payments.example", &chain, "203.0.113.20", 60),
            resolved("api.payments.example", &chain, "203.0.113.21", 20),
            resolved("api.payments.example", &chain, "2001:db8::1", 60),
        ])
    );
}

#[test]
fn a_direct_answer_has_no_cnames_and_errors_have_no_answers() {
    let wire = reply("db.example.", vec![record("db.example", 30, a([192, 0, 2, 7]))]);
    assert_eq!(parse(&wire, false), Reply::Answers(vec![resolved("db.example", &[], "192.0.2.7", 30)]));

    let mut packet = Packet::parse(&wire).unwrap();
    *packet.rcode_mut() = RCODE::NameError;
    packet.answers.clear();
    assert_eq!(parse(&packet.build_bytes_vec().unwrap(), false), Reply::Answers(Vec::new()));

    let mut query = Packet::new_query(1);
    query.questions.push(Question::new(
        Name::new_unchecked("x.example"),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    assert_eq!(parse(&query.build_bytes_vec().unwrap(), false), Reply::NotAResponse);
}

#[test]
fn a_cname_loop_ends() {
    let wire = reply(
        "a.example",
        vec![
            record("a.example", 30, RData::CNAME(CNAME(Name::new_unchecked("b.example")))),
            record("b.example", 30, RData::CNAME(CNAME(Name::new_unchecked("a.example")))),
            record("b.example", 30, a([192, 0, 2, 9])),
        ],
    );
    assert_eq!(parse(&wire, false), Reply::Answers(vec![resolved("a.example", &["b.example"], "192.0.2.9", 30)]));
}

#[test]
fn a_cut_reply_keeps_the_answers_that_fit_whole() {
    let answers: Vec<_> = (0..40u8).map(|i| record("cdn.example", 60, a([203, 0, 113, i]))).collect();
    let wire = reply("cdn.example", answers);
    assert!(wire.len() > 400);
    let cut = &wire[..400];
    assert_eq!(parse(cut, false), Reply::Malformed);
    let Reply::Answers(kept) = parse(cut, true) else { panic!("no answers from a cut reply") };
    // 12 header and 17 question bytes, then records of equal length.
    let record_len = (wire.len() - 12 - 17) / 40;
    assert_eq!(kept.len(), (400 - 12 - 17) / record_len);
    assert_eq!(kept[0], resolved("cdn.example", &[], "203.0.113.0", 60));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1100), cut in any::<bool>()) {
        let _ = parse(&bytes, cut);
    }

    #[test]
    fn mangled_replies_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8), len in 0usize..200) {
        let mut wire = reply(
            "api.example",
            vec![
                record("api.example", 30, RData::CNAME(CNAME(Name::new_unchecked("edge.example")))),
                record("edge.example", 30, a([192, 0, 2, 1])),
            ],
        );
        let len_before = wire.len().max(1);
        for (at, byte) in flips {
            if let Some(b) = wire.get_mut(at % len_before) {
                *b = byte;
            }
        }
        wire.truncate(len.min(wire.len()));
        let _ = parse(&wire, true);
        let _ = parse(&wire, false);
    }
}
