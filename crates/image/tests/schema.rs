//! proto/stasis.proto (compiled into `stasis_image::schema`, which `stasis_image::model`
//! re-exports) and the hand-written model it replaced (frozen in
//! tests/data/model_handwritten.rs) describe the same wire format:
//! - every message, field, number, type and label, and every enum value, agree
//!   (model_handwritten.rs parsed at test time, the .proto through its
//!   FileDescriptorSet);
//! - a fully populated instance of every message (every field set, generated from the
//!   descriptor) decodes with both and re-encodes to the same bytes;
//! - real manifests (tests/data/*.manifest.img, and fuzz/corpus/manifest when present)
//!   decode with both, record by record, to the same values.

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use stasis_image::schema;

/// The hand-written prost API that `stasis_image::model` was before it became the
/// generated schema (frozen): the wire format images were written in until then. The
/// schema must keep reading and writing exactly that.
#[allow(dead_code)]
#[path = "data/model_handwritten.rs"]
mod model;

fn descriptor() -> prost_types::FileDescriptorProto {
    let fds = FileDescriptorSet::decode(schema::FILE_DESCRIPTOR_SET).expect("descriptor set");
    assert_eq!(fds.file.len(), 1, "one .proto file, no imports");
    let f = fds.file.into_iter().next().unwrap();
    assert_eq!(f.package(), schema::PACKAGE);
    assert_eq!(f.syntax(), "proto3");
    f
}

/// Fields added to the schema since the hand-written model was frozen (message, field).
/// Old images lack them (they decode as the default); the frozen model must still read
/// and write everything else exactly as before, and never sees these.
const ADDED_SINCE_FROZEN: &[(&str, &str)] = &[("Thread", "ioprio"), ("ProcAttrs", "mdwe"), ("Object", "owner"), ("UnixObj", "passcred"), ("UnixObj", "passsec"), ("UnixObj", "peek_off"), ("UnixObj", "rcvbuf"), ("UnixObj", "sndbuf"), ("UnixObj", "messages"), ("UnixObj", "peer_name"), ("UnixObj", "external"), ("UnixObj", "peer_gone"), ("UnixObj", "waiting"), ("UnixObj", "connecting_to"), ("UnixObj", "name_unlinked"), ("UnixObj", "in_flight"), ("UnixObj", "cred_ranges"), ("UnixObj", "file"), ("Process", "net_lock"), ("Process", "net_lock_ns"), ("Object", "netlink"), ("Object", "packet"), ("InetObj", "sockopts"), ("InetObj", "tcp_state"), ("InetObj", "shutdown"), ("InetObj", "mcast"), ("InetObj", "queued"), ("Object", "tty"), ("Object", "tty_fd"), ("Process", "ctty"), ("Process", "cgroup_dirs"), ("GhostObj", "paged"), ("GhostObj", "uid"), ("GhostObj", "gid"), ("GhostObj", "atime_ns"), ("GhostObj", "mtime_ns"), ("GhostObj", "rdev"), ("FifoObj", "deleted"), ("FifoObj", "mode"), ("FifoObj", "uid"), ("FifoObj", "gid"), ("ProcAttrs", "cwd_ghost"), ("FileObj", "in_proc"), ("ProcAttrs", "stop_signal"), ("ProcAttrs", "loginuid"), ("MmInfo", "membarrier"), ("MmInfo", "memory_merge"), ("Object", "pidfd"), ("Object", "ns_fd"), ("Object", "fanotify"), ("Vma", "guards"), ("EpollItem", "via"), ("Vma", "aio"), ("Vma", "huge_page_size"), ("ShmemObj", "huge_page_size"), ("SysvShmObj", "huge_page_size"), ("GhostObj", "huge_page_size"), ("ProcAttrs", "root_ghost"), ("TcpConn", "urgent"), ("TcpConn", "urgent_at"), ("TcpConn", "urgent_read"), ("InetObj", "ending"), ("UnixObj", "sockopts"), ("UnixObj", "oob_at"), ("UnixObj", "peer_cred"), ("UnixObj", "bound_in"), ("PipeObj", "packets"), ("ProcAttrs", "stops_unreported"), ("ProcAttrs", "stop_reports_known"), ("Thread", "creds"), ("Thread", "own_fs"), ("Thread", "sched_flags"), ("Thread", "sched_runtime"), ("Thread", "sched_deadline"), ("Thread", "sched_period"), ("Thread", "tsc_sigsegv"), ("Thread", "mce_kill"), ("Thread", "cpuid_faulting"), ("ProcAttrs", "coredump_filter"), ("ProcAttrs", "autogroup_nice"), ("InetObj", "waiting"), ("InetObj", "accept_on"), ("Process", "leader_exited"), ("Process", "leader_exit_status"), ("MmInfo", "lock_future"), ("MmInfo", "ldt"), ("Thread", "mempolicy"), ("Vma", "mempolicy"), ("MappedFileObj", "saved"), ("UnixObj", "renamed_to"), ("Object", "mqueue"), ("Shard", "stored_size")];

/// Messages added to the schema since the hand-written model was frozen (only reachable
/// through fields of ADDED_SINCE_FROZEN, so old images never hold them).
const ADDED_MESSAGES: &[&str] = &["NetlinkObj", "PacketObj", "PacketFanout", "PacketMclist", "ClassicBpfInsn", "SockCommon", "FileOwner", "UnixMsg", "InFlight", "SockOpt", "McastGroup", "Datagram", "MsgCreds", "CredRange", "SockFile", "TtyObj", "TtyFdObj", "CgroupDir", "CgroupSetting", "CgroupFileOwner", "PidfdObj", "NsFdObj", "FanotifyObj", "FanotifyMark", "AioRing", "AioEvent", "PacketRing", "PacketFrame", "TcpEnding", "ThreadFs", "TcpWaiting", "MemPolicy", "MqueueObj", "MqueueMsg"];

/// Enum values added since the hand-written model was frozen (enum, value as model.rs
/// would spell it): old images never hold them.
const ADDED_ENUM_VALUES: &[(&str, &str)] = &[("VmaKind", "AioRing"), ("VmaKind", "PacketRing")];

fn added(msg: &str, field: &str) -> bool {
    ADDED_SINCE_FROZEN.contains(&(msg, field))
}

/// A field as model.rs declares it: (number, kind, label) with kind as prost spells it
/// ("uint64", "message", "enumeration=VmaKind", "bytes") and label "" / "repeated" /
/// "optional".
type Fields = BTreeMap<String, (i32, String, String)>;

/// Messages and enums of model.rs, from its `#[prost(...)]` attributes.
fn model_rs() -> (BTreeMap<String, Fields>, BTreeMap<String, BTreeMap<String, i32>>) {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/model_handwritten.rs")).unwrap();
    let mut msgs: BTreeMap<String, Fields> = BTreeMap::new();
    let mut enums: BTreeMap<String, BTreeMap<String, i32>> = BTreeMap::new();
    let mut cur_msg: Option<String> = None;
    let mut cur_enum: Option<String> = None;
    let mut attr: Option<String> = None;
    for line in src.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest.trim_end_matches(" {").to_string();
            msgs.insert(name.clone(), Fields::new());
            cur_msg = Some(name);
        } else if let Some(rest) = line.strip_prefix("pub enum ") {
            let name = rest.trim_end_matches(" {").to_string();
            enums.insert(name.clone(), BTreeMap::new());
            cur_enum = Some(name);
        } else if line == "}" {
            cur_msg = None;
            cur_enum = None;
        } else if let Some(a) = line.strip_prefix("#[prost(") {
            attr = Some(a.trim_end_matches(")]").to_string());
        } else if let (Some(m), Some(a), Some(rest)) = (&cur_msg, attr.take(), line.strip_prefix("pub ")) {
            let name = rest.split(':').next().unwrap().trim().to_string();
            let mut kind = String::new();
            let mut label = String::new();
            let mut tag = None;
            for part in a.split(',').map(str::trim) {
                match part.split_once('=').map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))) {
                    Some(("tag", v)) => tag = Some(v.parse::<i32>().unwrap()),
                    Some(("enumeration", v)) => kind = format!("enumeration={v}"),
                    Some(("bytes", _)) => kind = "bytes".into(),
                    None if part == "repeated" || part == "optional" => label = part.into(),
                    None => kind = part.into(),
                    Some(other) => panic!("{m}.{name}: unexpected prost attribute {other:?}"),
                }
            }
            let tag = tag.unwrap_or_else(|| panic!("{m}.{name}: no tag"));
            msgs.get_mut(m).unwrap().insert(name, (tag, kind, label));
        } else if let (Some(e), Some((name, value))) = (&cur_enum, line.trim_end_matches(',').split_once(" = ")) {
            enums.get_mut(e).unwrap().insert(name.to_string(), value.parse().unwrap());
        }
    }
    (msgs, enums)
}

/// The same description, from the .proto.
fn proto_fields(m: &DescriptorProto) -> Fields {
    m.field
        .iter()
        .map(|f| {
            let kind = match f.r#type() {
                Type::Message => "message".to_string(),
                Type::Enum => format!("enumeration={}", f.type_name().rsplit('.').next().unwrap()),
                t => t.as_str_name().trim_start_matches("TYPE_").to_lowercase(),
            };
            let label = if f.label() == Label::Repeated {
                "repeated"
            } else if f.r#type() == Type::Message {
                "optional" // prost: a singular message field is an Option
            } else {
                ""
            };
            (f.name().to_string(), (f.number(), kind, label.to_string()))
        })
        .collect()
}

/// `FILE_PRIVATE` -> `FilePrivate`.
fn camel(s: &str) -> String {
    s.split('_').map(|w| w[..1].to_string() + &w[1..].to_lowercase()).collect()
}

#[test]
fn proto_and_model_rs_agree_on_every_field() {
    let fd = descriptor();
    let (msgs, enums) = model_rs();
    let proto: BTreeMap<String, Fields> = fd.message_type.iter().map(|m| (m.name().to_string(), proto_fields(m))).collect();
    let frozen: Vec<_> = proto.keys().filter(|m| !ADDED_MESSAGES.contains(&m.as_str())).collect();
    assert_eq!(frozen, msgs.keys().collect::<Vec<_>>(), "messages of the .proto (minus those added since) vs model.rs");
    for (name, fields) in &msgs {
        let mut p = proto[name].clone();
        p.retain(|f, _| !added(name, f));
        assert_eq!(&p, fields, "message {name}: .proto (left, minus fields added since) vs model.rs (right)");
    }
    for (m, f) in ADDED_SINCE_FROZEN {
        let (num, ..) = proto[*m].get(*f).unwrap_or_else(|| panic!("{m}.{f} listed as added but not in the .proto"));
        assert!(msgs[*m].values().all(|(n, ..)| n != num), "{m}.{f} reuses tag {num} of the frozen model");
    }
    assert!(msgs["Object"].len() > 20 && msgs["Process"].len() > 35, "model.rs parsed too little: {msgs:?}");
    // Enums: same names (VMA_KIND_FILE_PRIVATE = FilePrivate) and values.
    let penums: BTreeMap<String, BTreeMap<String, i32>> = fd
        .enum_type
        .iter()
        .map(|e| {
            let prefix = format!("{}_", e.name().chars().fold(String::new(), |mut s, c| {
                if c.is_uppercase() && !s.is_empty() {
                    s.push('_');
                }
                s.push(c.to_ascii_uppercase());
                s
            }));
            let vals = e
                .value
                .iter()
                .map(|v| (camel(v.name().strip_prefix(&prefix).expect("prefixed enum value")), v.number()))
                .filter(|(n, _)| !ADDED_ENUM_VALUES.contains(&(e.name(), n.as_str())))
                .collect();
            (e.name().to_string(), vals)
        })
        .collect();
    assert_eq!(penums, enums, ".proto (left, minus values added since) vs model.rs (right) enums");
    for (e, v) in ADDED_ENUM_VALUES {
        let full = fd.enum_type.iter().find(|x| x.name() == *e).unwrap_or_else(|| panic!("enum {e} listed as extended but not in the .proto"));
        assert!(full.value.iter().any(|x| camel(x.name()).ends_with(v)), "{e}.{v} listed as added but not in the .proto");
    }
    // The kinds of an object are the members of the `kind` oneof; id, net_ns and owner
    // (signal-driven I/O of any fd kind) are not.
    let obj = fd.message_type.iter().find(|m| m.name() == "Object").unwrap();
    assert_eq!(obj.oneof_decl.iter().map(|o| o.name()).collect::<Vec<_>>(), ["kind"]);
    let outside: Vec<&str> = obj.field.iter().filter(|f| f.oneof_index.is_none()).map(|f| f.name()).collect();
    assert_eq!(outside, ["id", "net_ns", "owner"]);
}

/// Canonical protobuf encoding (fields by number, packed repeated scalars, as prost
/// writes) of a `name` message with every field set to a non-default value; `choice`
/// selects the member of each oneof (the first one if out of range).
fn populated(fd: &prost_types::FileDescriptorProto, name: &str, choice: usize) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let m = fd.message_type.iter().find(|m| m.name() == name).unwrap_or_else(|| panic!("no message {name}"));
    let mut fields: Vec<_> = m.field.iter().collect();
    fields.sort_by_key(|f| f.number());
    let mut out = Vec::new();
    for f in fields {
        if added(name, f.name()) {
            continue; // the frozen model does not know it
        }
        if let Some(k) = f.oneof_index {
            let members: Vec<_> = m.field.iter().filter(|g| g.oneof_index == Some(k)).collect();
            let pick = members.get(choice).unwrap_or(&members[0]);
            if pick.number() != f.number() {
                continue;
            }
        }
        let tag = f.number() as u32;
        let n = f.number() as u64;
        // Values that catch a type mismatch: negative signed ints (10-byte varints),
        // unsigned values above the signed range, 64-bit values above 32 bits.
        let varint = |out: &mut Vec<u8>, i: u64| match f.r#type() {
            Type::Int32 => encode_varint((-(n as i64) - 1000 * i as i64) as u64, out),
            Type::Int64 => encode_varint((-(1i64 << 40) - n as i64 - i as i64) as u64, out),
            Type::Uint32 => encode_varint(0xF000_0000 + n + i, out),
            Type::Uint64 => encode_varint(0xF000_0000_0000_0000 + n + i, out),
            Type::Bool => encode_varint(1, out),
            Type::Enum => encode_varint(1 + i, out),
            t => panic!("{name}.{}: type {t:?} not generated", f.name()),
        };
        let count = if f.label() == Label::Repeated { 2 } else { 1 };
        match f.r#type() {
            Type::String | Type::Bytes | Type::Message => {
                for i in 0..count {
                    let body = match f.r#type() {
                        Type::String => format!("{name}.{} #{i} é", f.name()).into_bytes(),
                        Type::Bytes => vec![0, 0xff, n as u8, i as u8, 0x80],
                        _ => populated(fd, f.type_name().rsplit('.').next().unwrap(), choice),
                    };
                    encode_key(tag, WireType::LengthDelimited, &mut out);
                    encode_varint(body.len() as u64, &mut out);
                    out.extend_from_slice(&body);
                }
            }
            _ if count > 1 => {
                let mut body = Vec::new();
                for i in 0..count {
                    varint(&mut body, i);
                }
                encode_key(tag, WireType::LengthDelimited, &mut out);
                encode_varint(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
            }
            _ => {
                encode_key(tag, WireType::Varint, &mut out);
                varint(&mut out, 0);
            }
        }
    }
    out
}

/// Decodes `bytes` as message `name` with `model` and with `schema`, re-encodes both:
/// (model bytes, schema bytes, model->schema bytes, schema->model bytes).
fn reencode(name: &str, bytes: &[u8]) -> [Vec<u8>; 4] {
    macro_rules! each {
        ($($t:ident),* $(,)?) => {
            match name {
                $(stringify!($t) => {
                    let m = model::$t::decode(bytes).unwrap_or_else(|e| panic!("model {name}: {e}"));
                    let s = schema::$t::decode(bytes).unwrap_or_else(|e| panic!("schema {name}: {e}"));
                    let m2s = schema::$t::decode(m.encode_to_vec().as_slice()).unwrap().encode_to_vec();
                    let s2m = model::$t::decode(s.encode_to_vec().as_slice()).unwrap().encode_to_vec();
                    [m.encode_to_vec(), s.encode_to_vec(), m2s, s2m]
                })*
                _ => panic!("message {name} missing from the list in reencode()"),
            }
        };
    }
    each!(
        Process, FileLock, Thread, Vma, MmInfo, Fd, SigAction, SigInfo, ITimer, PosixTimer, Rlimit, Creds, ProcAttrs,
        Object, UtsNsObj, IpcNsObj, Sysctl, SysvPerm, SysvShmObj, SysvMsgObj, SysvMsg, SysvSemObj, EventfdObj,
        TimerfdObj, SignalfdObj, EpollObj, EpollItem, InotifyObj, InotifyWatch, FileObj, UnixObj, InetObj, TcpConn,
        GhostObj, FileIdentity, MappedFileObj, PipeObj, PipeEndObj, FifoObj, FifoFdObj, ShmemObj, PageIndex, PageRun,
        Features, End, Shard,
    )
}

#[test]
fn fully_populated_messages_round_trip_between_model_and_schema() {
    let fd = descriptor();
    for m in fd.message_type.iter().filter(|m| !ADDED_MESSAGES.contains(&m.name())) {
        let kinds = m.field.iter().filter(|f| f.oneof_index.is_some()).count().max(1);
        for choice in 0..kinds {
            let b = populated(&fd, m.name(), choice);
            let [model, schema, m2s, s2m] = reencode(m.name(), &b);
            let what = format!("{} (oneof member {choice})", m.name());
            assert_eq!(model, b, "{what}: model does not reproduce the canonical encoding");
            assert_eq!(schema, b, "{what}: schema does not reproduce the canonical encoding");
            assert_eq!(m2s, b, "{what}: model -> schema");
            assert_eq!(s2m, b, "{what}: schema -> model");
        }
    }
}

/// Every object kind: one model object with only that kind set decodes with `schema`
/// as that `Kind` variant, and back.
#[test]
fn object_kinds_are_the_oneof() {
    let o = model::Object {
        id: 7,
        unix: Some(model::UnixObj { ino: 5, peer_ino: 6, ..Default::default() }),
        net_ns: 4026531992,
        ..Default::default()
    };
    let s = schema::Object::decode(o.encode_to_vec().as_slice()).unwrap();
    assert_eq!(s.id, 7);
    assert_eq!(s.net_ns, 4026531992);
    match &s.kind {
        Some(schema::object::Kind::Unix(u)) => assert_eq!((u.ino, u.peer_ino), (5, 6)),
        k => panic!("decoded as {k:?}"),
    }
    let back = model::Object::decode(s.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, o);
    // An object with no kind stays one with no kind.
    let none = schema::Object::decode(model::Object { id: 3, ..Default::default() }.encode_to_vec().as_slice()).unwrap();
    assert!(none.kind.is_none());
}

/// Payloads of the records of a manifest (framing per docs/FORMAT.md): (type, payload).
fn records(data: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut off = stasis_image::HEADER_LEN;
    while off + 12 <= data.len() {
        let le = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
        let (ty, len) = (le(off), le(off + 4) as usize);
        let body = &data[off + 12..off + 12 + len];
        out.push((ty, body));
        off += 12 + len;
    }
    out
}

fn message_of(ty: u32) -> &'static str {
    use stasis_image::rec;
    match ty {
        rec::PROCESS => "Process",
        rec::OBJECT => "Object",
        rec::PAGE_INDEX => "PageIndex",
        rec::FEATURES => "Features",
        rec::END => "End",
        t => panic!("record type {t:#x}"),
    }
}

/// Real manifests: every record decodes with both to the same values (same bytes when
/// re-encoded). Those stasis wrote (tests/data) also re-encode to exactly their bytes.
#[test]
fn real_manifests_decode_the_same_with_model_and_schema() {
    let data_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut real = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(data_dir).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".manifest.img") {
            continue;
        }
        let data = std::fs::read(&p).unwrap();
        stasis_image::parse_manifest(&data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for (ty, body) in records(&data) {
            if ty == stasis_image::rec::OBJECT {
                let k = schema::Object::decode(body).unwrap().kind.expect("an object with a kind");
                kinds.insert(format!("{k:?}").split('(').next().unwrap().to_string());
            }
            let [model, schema, m2s, s2m] = reencode(message_of(ty), body);
            for (what, b) in [("model", model), ("schema", schema), ("model->schema", m2s), ("schema->model", s2m)] {
                assert!(b == body, "{}: record type {ty:#x}: {what} re-encodes differently", p.display());
            }
        }
        real += 1;
    }
    assert!(real > 1, "no real manifests under {data_dir}");
    assert!(kinds.len() >= 8, "real manifests hold few object kinds: {kinds:?}");
    // The fuzz corpus: real manifests and mutations of them. Those the parser accepts
    // decode the same with both (their bytes need not be canonical).
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/manifest");
    let Ok(dir) = std::fs::read_dir(corpus) else { return };
    let (mut seen, mut records_seen) = (0, 0);
    for e in dir {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        if stasis_image::parse_manifest(&data).is_err() {
            continue;
        }
        seen += 1;
        for (ty, body) in records(&data) {
            if ty & stasis_image::rec::CRITICAL == 0 {
                continue; // skipped by readers
            }
            let [model, schema, m2s, s2m] = reencode(message_of(ty), body);
            assert_eq!(model, schema, "record type {ty:#x}");
            assert_eq!(model, m2s);
            assert_eq!(model, s2m);
            records_seen += 1;
        }
    }
    eprintln!("fuzz corpus: {seen} manifests accepted, {records_seen} records compared");
}
