//! Valid SIP messages shared by the sip_* integration tests. `\r\n` line ends unless a
//! message tests something else. Each entry: (name, bytes).
#![allow(dead_code)]

pub const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice \\\"Al\\\" Smith\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n\
Supported: replaces, timer\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
User-Agent: TestPhone/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 134\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

pub const REGISTER_COMPACT: &str = "REGISTER sip:registrar.example.com SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.20:5060;branch=z9hG4bKnashds7\r\n\
max-forwards: 70\r\n\
t: <sip:carol@example.com>\r\n\
f: <sip:carol@example.com>;tag=456248\r\n\
i: 843817637684230@998sdasdh09\r\n\
CSEQ: 1826 REGISTER\r\n\
m: <sip:carol@192.0.2.20>;expires=3600, \"Carol Mobile\" <sip:carol@198.51.100.7;transport=tcp>;q=0.5\r\n\
k: path, outbound\r\n\
Expires: 7200\r\n\
l: 0\r\n\
\r\n";

pub const FOLDED: &str = "OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
Via  :SIP / 2.0 / UDP\r\n  proxy.example.com:5060 ;branch=z9hG4bKhjhs8ass877\r\n\
Via:    SIP/2.0/UDP pc33.example.com\t;branch=z9hG4bKa1,\r\n\tSIP/2.0/TCP [2001:db8::9];branch=z9hG4bKa2\r\n\
Max-Forwards:69\r\n\
To: <sip:carol@chicago.example.com>\r\n\
From: Alice\r\n <sip:alice@example.com> ;tag=1928301774\r\n\
Call-ID:   a84b4c76e66710   \r\n\
CSeq: 63104\r\n OPTIONS\r\n\
Subject: I know you're there,\r\n         pick up the phone\r\n         and talk to me!\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\
\r\n";

pub const IPV6: &str = "INVITE sip:bob@[2001:db8::10]:5070;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::20]:5060;branch=z9hG4bKv6;received=[2001:db8::21];rport=5062\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@[2001:db8::20]>;tag=v6a\r\n\
To: <sip:bob@[2001:db8::10]:5070>\r\n\
Call-ID: v6call@[2001:db8::20]\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@[2001:db8::20]:5060>\r\n\
Content-Length: 0\r\n\
\r\n";

pub const RESPONSE_200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKedge1, SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.10;rport=5066\r\n\
Record-Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>\r\n\
Record-Route: <sip:far.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 12\r\n\
\r\n\
v=0\r\ns=bob\r\n";

pub const TRYING: &str = "SIP/2.0 100 Trying\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

pub const TEL_ADDR_SPEC: &str = "INVITE tel:+1-201-555-0123;phone-context=example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS ua.example.com:5061;branch=z9hG4bKtel\r\n\
Max-Forwards: 10\r\n\
From: sip:alice@example.com;tag=addrspec\r\n\
To: tel:+1-201-555-0123\r\n\
Call-ID: tel-1\r\n\
CSeq: 7 INVITE\r\n\
Route: <sip:core1.example.com;lr>,<sip:core2.example.com;lr>\r\n\
Route: <sip:core3.example.com;lr>\r\n\
Content-Length: 0\r\n\
\r\n";

pub const MESSAGE_LOWER: &str = "MESSAGE sip:user2@domain.com SIP/2.0\r\n\
via: SIP/2.0/TCP user1pc.domain.com;branch=z9hG4bK776sgdkse\r\n\
max-forwards: 70\r\n\
from: sip:user1@domain.com;tag=49583\r\n\
to: sip:user2@domain.com\r\n\
call-id: asd88asd77a@1.2.3.4\r\n\
cseq: 1 MESSAGE\r\n\
x-custom-header: a, \"b, c\", <d,e>\r\n\
content-type: text/plain\r\n\
content-length: 18\r\n\
\r\n\
Watson, come here.";

pub const BYE_LF: &str = "BYE sip:bob@192.0.2.4 SIP/2.0\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds10\n\
Max-Forwards: 70\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\n\
CSeq: 231 BYE\n\
Content-Length: 0\n\
\n";

pub const ACK_SIPS: &str =
    "ACK sips:bob@biloxi.example.com:5061;transport=tls?Subject=hi SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bKack\r\n\
Max-Forwards: 70\r\n\
From: Alice <sips:alice@atlanta.example.com>;tag=1928301774\r\n\
To: Bob <sips:bob@biloxi.example.com>;tag=a6c85cf\r\n\
Call-ID: ack-1\r\n\
CSeq: 314159 ACK\r\n\
Content-Length: 0\r\n\
\r\n";

pub const NOTIFY_UNKNOWN: &str = "NOTIFY sip:u@192.0.2.50:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.60;branch=z9hG4bKn1\r\n\
Max-Forwards: 70\r\n\
From: <sip:pres@example.com>;tag=ffd2\r\n\
To: <sip:u@example.com>;tag=xfg9\r\n\
Call-ID: notify-1\r\n\
CSeq: 20 NOTIFY\r\n\
o: presence\r\n\
Subscription-State: active;expires=599\r\n\
P-Weird:\r\n\
Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n\
Content-Length: 0\r\n\
\r\n";

pub const ALL: &[(&str, &str)] = &[
    ("invite", INVITE),
    ("register_compact", REGISTER_COMPACT),
    ("folded", FOLDED),
    ("ipv6", IPV6),
    ("response_200", RESPONSE_200),
    ("trying", TRYING),
    ("tel_addr_spec", TEL_ADDR_SPEC),
    ("message_lower", MESSAGE_LOWER),
    ("bye_lf", BYE_LF),
    ("ack_sips", ACK_SIPS),
    ("notify_unknown", NOTIFY_UNKNOWN),
];
