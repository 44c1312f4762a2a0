//! Protobuf's wire format as a tree that keeps everything it read: the order of the
//! fields, their numbers and wire types, and every field no schema names. Encoding a tree
//! decoded from canonical protobuf (what CRIU writes) gives back the same bytes; a
//! nested message or packed list that would not is kept as its bytes.

use super::schema::{FieldType, MessageType, Schema};

/// Deepest nesting decoded; CRIU's images nest a few levels.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// A length-delimited field kept as bytes (strings, bytes, anything unknown).
    Bytes(Vec<u8>),
    Message(Message),
    /// A packed list of varints.
    Packed(Vec<u64>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub value: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<Field>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("a varint longer than 10 bytes at byte {0}")]
    LongVarint(usize),
    #[error("wire type {kind} (field {number}) at byte {at}, which images do not use")]
    WireType { kind: u64, number: u64, at: usize },
    #[error("field number {0} is out of range")]
    FieldNumber(u64),
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, WireError> {
    let start = *at;
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*at).ok_or(WireError::Truncated(*at))?;
        *at += 1;
        if shift == 63 && b > 1 {
            return Err(WireError::LongVarint(start));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError::LongVarint(start))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take<'a>(buf: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], WireError> {
    let end = at.checked_add(n).ok_or(WireError::Truncated(*at))?;
    let s = buf.get(*at..end).ok_or(WireError::Truncated(*at))?;
    *at = end;
    Ok(s)
}

impl Message {
    /// Decodes `buf` as a message of type `ty` (none: fields by number only).
    pub fn decode(
        buf: &[u8],
        ty: Option<&MessageType>,
        schema: &Schema,
    ) -> Result<Self, WireError> {
        decode_at(buf, ty, schema, 0)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        for f in &self.fields {
            let key = u64::from(f.number) << 3;
            match &f.value {
                Value::Varint(v) => {
                    put_varint(out, key);
                    put_varint(out, *v);
                }
                Value::Fixed64(v) => {
                    put_varint(out, key | 1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Value::Fixed32(v) => {
                    put_varint(out, key | 5);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Value::Bytes(b) => {
                    put_varint(out, key | 2);
                    put_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
                Value::Message(m) => {
                    let body = m.encode();
                    put_varint(out, key | 2);
                    put_varint(out, body.len() as u64);
                    out.extend_from_slice(&body);
                }
                Value::Packed(vs) => {
                    let mut body = Vec::new();
                    for v in vs {
                        put_varint(&mut body, *v);
                    }
                    put_varint(out, key | 2);
                    put_varint(out, body.len() as u64);
                    out.extend_from_slice(&body);
                }
            }
        }
    }

    /// The first value of field `number` that is a varint.
    pub fn varint(&self, number: u32) -> Option<u64> {
        self.fields.iter().find_map(|f| match f.value {
            Value::Varint(v) if f.number == number => Some(v),
            _ => None,
        })
    }
}

fn decode_at(
    buf: &[u8],
    ty: Option<&MessageType>,
    schema: &Schema,
    depth: usize,
) -> Result<Message, WireError> {
    let mut at = 0;
    let mut fields = Vec::new();
    while at < buf.len() {
        let key_at = at;
        let key = varint(buf, &mut at)?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(WireError::FieldNumber(number));
        }
        let number = number as u32;
        let value = match key & 7 {
            0 => Value::Varint(varint(buf, &mut at)?),
            1 => {
                let b = take(buf, &mut at, 8)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            }
            5 => {
                let b = take(buf, &mut at, 4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            }
            2 => {
                let len = varint(buf, &mut at)?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated(at))?;
                let body = take(buf, &mut at, len)?;
                let field = ty.and_then(|t| t.field(number));
                nested(body, field.map(|f| &f.ty), schema, depth)
            }
            kind => {
                return Err(WireError::WireType {
                    kind,
                    number: number.into(),
                    at: key_at,
                })
            }
        };
        fields.push(Field { number, value });
    }
    Ok(Message { fields })
}

/// A length-delimited body, as its field's type says: a message or a packed list when it
/// decodes and encodes back to the same bytes, else the bytes.
fn nested(body: &[u8], ty: Option<&FieldType>, schema: &Schema, depth: usize) -> Value {
    let keep = || Value::Bytes(body.to_vec());
    match ty {
        Some(FieldType::Message(name)) if depth < MAX_DEPTH => {
            let Some(mt) = schema.message(name) else {
                return keep();
            };
            match decode_at(body, Some(mt), schema, depth + 1) {
                Ok(m) if m.encode() == body => Value::Message(m),
                _ => keep(),
            }
        }
        Some(t) if t.is_varint() => {
            let mut at = 0;
            let mut vs = Vec::new();
            while at < body.len() {
                match varint(body, &mut at) {
                    Ok(v) => vs.push(v),
                    Err(_) => return keep(),
                }
            }
            let packed = Value::Packed(vs);
            let mut again = Vec::new();
            if let Value::Packed(vs) = &packed {
                for v in vs {
                    put_varint(&mut again, *v);
                }
            }
            if again == body {
                packed
            } else {
                keep()
            }
        }
        _ => keep(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(
            "message outer\n 1 a uint32\n 2 inner inner\n 3 *list uint32\n\
             message inner\n 1 name string\n",
        )
        .unwrap()
    }

    #[test]
    fn round_trips_known_and_unknown_fields_in_their_order() {
        let s = schema();
        // a=300, an unknown fixed32 (9), inner{name="hi"}, packed list [1, 2], a=1 again.
        let buf = [
            0x08, 0xac, 0x02, 0x4d, 1, 2, 3, 4, 0x12, 4, 0x0a, 2, b'h', b'i', 0x1a, 2, 1, 2, 0x08,
            1,
        ];
        let m = Message::decode(&buf, s.message("outer"), &s).unwrap();
        assert_eq!(m.fields.len(), 5);
        assert!(matches!(m.fields[2].value, Value::Message(_)));
        assert_eq!(m.fields[3].value, Value::Packed(vec![1, 2]));
        assert_eq!(m.encode(), buf);
    }

    #[test]
    fn a_nested_message_that_would_not_encode_back_stays_bytes() {
        let s = schema();
        // inner's name with an overlong length varint (0x82 0x00 = 2).
        let buf = [0x12, 5, 0x0a, 0x82, 0x00, b'h', b'i'];
        let m = Message::decode(&buf, s.message("outer"), &s).unwrap();
        assert!(matches!(m.fields[0].value, Value::Bytes(_)));
        assert_eq!(m.encode(), buf);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let s = schema();
        for buf in [
            &[0x08][..],
            &[0x12, 0x7f, 1],
            &[0x0b],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[0x00, 0x01],
        ] {
            assert!(
                Message::decode(buf, s.message("outer"), &s).is_err(),
                "{buf:?}"
            );
        }
    }
}
