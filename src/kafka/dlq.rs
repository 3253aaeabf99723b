//! Dead-letter records: the original bytes, unchanged, with headers saying why and
//! where from. Shared by every consumer (aggregate, ingest).

use rdkafka::message::{Header, OwnedHeaders};

use crate::events::{
    DETAIL_HEADER, REASON_HEADER, Rejection, SOURCE_OFFSET_HEADER, SOURCE_TOPIC_HEADER,
};

/// The headers of a dead-letter record.
pub fn headers(rejection: &Rejection, topic: &str, partition: i32, offset: i64) -> OwnedHeaders {
    let offset = format!("{partition}/{offset}");
    OwnedHeaders::new_with_capacity(4)
        .insert(Header {
            key: REASON_HEADER,
            value: Some(rejection.reason.as_str()),
        })
        .insert(Header {
            key: DETAIL_HEADER,
            value: Some(rejection.detail.as_str()),
        })
        .insert(Header {
            key: SOURCE_TOPIC_HEADER,
            value: Some(topic),
        })
        .insert(Header {
            key: SOURCE_OFFSET_HEADER,
            value: Some(offset.as_str()),
        })
}
