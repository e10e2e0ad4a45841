//! `foxglove.CompressedImage` in protobuf: the message, and the `FileDescriptorSet` that MCAP
//! carries as its schema (schema encoding `protobuf`, message encoding `protobuf`), which is
//! what Foxglove's image panel and the `mcap-protobuf-support` decoder expect.
//!
//! The descriptor is declared here with `prost-types` rather than generated from a `.proto`
//! file: two small messages do not justify a `protoc` build dependency. It matches Foxglove's
//! published `foxglove/CompressedImage.proto` (timestamp = 1, data = 2, format = 3,
//! frame_id = 4) and `google/protobuf/timestamp.proto`.

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, Timestamp,
};

/// The MCAP schema name (the protobuf full name).
pub const SCHEMA_NAME: &str = "foxglove.CompressedImage";
/// The `format` field: JPEG, as recorded.
pub const FORMAT_JPEG: &str = "jpeg";

/// A compressed image, as Foxglove defines it.
#[derive(Clone, PartialEq, Message)]
pub struct CompressedImage {
    /// Capture time. We write `CLOCK_MONOTONIC` time (the camera's clock); the MCAP log time
    /// carries the episode timeline.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    #[prost(string, tag = "3")]
    pub format: String,
    /// The camera's name.
    #[prost(string, tag = "4")]
    pub frame_id: String,
}

/// Nanoseconds as a protobuf `Timestamp`.
pub fn timestamp(ns: u64) -> Timestamp {
    Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

/// A protobuf `Timestamp` as nanoseconds (0 for negative times).
pub fn timestamp_ns(t: &Timestamp) -> u64 {
    let s = u64::try_from(t.seconds).unwrap_or(0);
    let n = u64::try_from(t.nanos).unwrap_or(0);
    s.saturating_mul(1_000_000_000).saturating_add(n)
}

fn field(name: &str, number: i32, ty: Type, type_name: Option<&str>) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.to_string()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        type_name: type_name.map(str::to_string),
        json_name: Some(name.to_string()),
        ..FieldDescriptorProto::default()
    }
}

/// The serialized `FileDescriptorSet` for `foxglove.CompressedImage` and its dependency.
pub fn descriptor_set() -> Vec<u8> {
    let timestamp_file = FileDescriptorProto {
        name: Some("google/protobuf/timestamp.proto".into()),
        package: Some("google.protobuf".into()),
        message_type: vec![DescriptorProto {
            name: Some("Timestamp".into()),
            field: vec![
                field("seconds", 1, Type::Int64, None),
                field("nanos", 2, Type::Int32, None),
            ],
            ..DescriptorProto::default()
        }],
        syntax: Some("proto3".into()),
        ..FileDescriptorProto::default()
    };
    let image_file = FileDescriptorProto {
        name: Some("foxglove/CompressedImage.proto".into()),
        package: Some("foxglove".into()),
        dependency: vec!["google/protobuf/timestamp.proto".into()],
        message_type: vec![DescriptorProto {
            name: Some("CompressedImage".into()),
            field: vec![
                field(
                    "timestamp",
                    1,
                    Type::Message,
                    Some(".google.protobuf.Timestamp"),
                ),
                field("frame_id", 4, Type::String, None),
                field("data", 2, Type::Bytes, None),
                field("format", 3, Type::String, None),
            ],
            ..DescriptorProto::default()
        }],
        syntax: Some("proto3".into()),
        ..FileDescriptorProto::default()
    };
    FileDescriptorSet {
        file: vec![timestamp_file, image_file],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_and_descriptor_decodes() {
        let m = CompressedImage {
            timestamp: Some(timestamp(12_345_678_901)),
            data: vec![0xFF, 0xD8, 1, 2, 3],
            format: FORMAT_JPEG.into(),
            frame_id: "wrist".into(),
        };
        let back = CompressedImage::decode(m.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            timestamp_ns(back.timestamp.as_ref().unwrap()),
            12_345_678_901
        );
        let set = FileDescriptorSet::decode(descriptor_set().as_slice()).unwrap();
        assert_eq!(set.file.len(), 2);
        assert_eq!(set.file[1].message_type[0].field.len(), 4);
    }
}
