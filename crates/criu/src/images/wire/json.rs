//! Messages as JSON (fields by name; a field no schema names as `#N`), and changes to a
//! message at a path such as `tc/comm` or `isk/src_addr/0`.

use serde_json::{json, Map, Value as Json};

use super::schema::{FieldDef, FieldType, MessageType, Schema};
use super::tree::{Field, Message, Value};

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn unzigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn hex(b: &[u8]) -> Json {
    json!({ "hex": hex::encode(b) })
}

/// One scalar as its type says.
fn scalar(v: u64, ty: &FieldType) -> Json {
    match ty {
        FieldType::Int => json!(v as i64),
        FieldType::Sint => json!(zigzag(v)),
        FieldType::Bool => json!(v != 0),
        _ => json!(v),
    }
}

fn value_json(v: &Value, def: Option<&FieldDef>, schema: &Schema) -> Json {
    let ty = def.map(|d| &d.ty);
    match (v, ty) {
        (Value::Varint(x), Some(t)) => scalar(*x, t),
        (Value::Varint(x), None) => json!(x),
        (Value::Fixed64(x), _) => json!(x),
        (Value::Fixed32(x), _) => json!(x),
        (Value::Bytes(b), Some(FieldType::String)) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => hex(b),
        },
        (Value::Bytes(b), _) => hex(b),
        (Value::Message(m), Some(FieldType::Message(n))) => {
            message_json(m, schema.message(n), schema)
        }
        (Value::Message(m), _) => message_json(m, None, schema),
        (Value::Packed(vs), t) => Json::Array(
            vs.iter()
                .map(|x| t.map_or(json!(x), |t| scalar(*x, t)))
                .collect(),
        ),
    }
}

fn key(f: &Field, ty: Option<&MessageType>) -> (String, Option<FieldDef>) {
    match ty.and_then(|t| t.field(f.number)) {
        Some(d) => (d.name.clone(), Some(d.clone())),
        None => (format!("#{}", f.number), None),
    }
}

/// A message as a JSON object; repeated fields (or fields that occur more than once) as
/// arrays.
pub fn message_json(m: &Message, ty: Option<&MessageType>, schema: &Schema) -> Json {
    let mut out = Map::new();
    for f in &m.fields {
        let (name, def) = key(f, ty);
        let v = value_json(&f.value, def.as_ref(), schema);
        let repeated = def.as_ref().is_some_and(|d| d.repeated);
        let seen = m.fields.iter().filter(|g| g.number == f.number).count() > 1;
        if repeated || seen {
            let slot = out.entry(name).or_insert_with(|| Json::Array(Vec::new()));
            if let Json::Array(a) = slot {
                match v {
                    Json::Array(vs) if matches!(f.value, Value::Packed(_)) => a.extend(vs),
                    v => a.push(v),
                }
            }
        } else {
            out.insert(name, v);
        }
    }
    Json::Object(out)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("'{0}' names no field here")]
    NoField(String),
    #[error("'{0}' is repeated: give an index after it (e.g. '{0}/0')")]
    NeedsIndex(String),
    #[error("index {index} of '{field}' is past its {len} values")]
    Index {
        field: String,
        index: usize,
        len: usize,
    },
    #[error(
        "'{0}' was kept as bytes (it did not decode as a message): its fields cannot be changed"
    )]
    Opaque(String),
    #[error("'{0}' is a message: change its fields one by one")]
    WholeMessage(String),
    #[error("'{field}' takes {want}, not {got}")]
    Type {
        field: String,
        want: &'static str,
        got: String,
    },
    #[error("the path is empty")]
    Empty,
}

/// What to do at the end of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(Json),
    Remove,
}

fn to_value(j: &Json, def: &FieldDef) -> Result<Value, EditError> {
    let bad = |want: &'static str| EditError::Type {
        field: def.name.clone(),
        want,
        got: j.to_string(),
    };
    Ok(match &def.ty {
        FieldType::Uint => Value::Varint(j.as_u64().ok_or_else(|| bad("an unsigned number"))?),
        FieldType::Int => Value::Varint(j.as_i64().ok_or_else(|| bad("a number"))? as u64),
        FieldType::Sint => Value::Varint(unzigzag(j.as_i64().ok_or_else(|| bad("a number"))?)),
        FieldType::Bool => {
            Value::Varint(u64::from(j.as_bool().ok_or_else(|| bad("true or false"))?))
        }
        FieldType::Fixed64 => Value::Fixed64(j.as_u64().ok_or_else(|| bad("an unsigned number"))?),
        FieldType::Fixed32 => Value::Fixed32(
            j.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("a 32-bit unsigned number"))?,
        ),
        FieldType::String => Value::Bytes(j.as_str().ok_or_else(|| bad("a string"))?.into()),
        FieldType::Bytes => Value::Bytes(
            j.as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| bad("hex digits in a string"))?,
        ),
        FieldType::Message(_) => return Err(EditError::WholeMessage(def.name.clone())),
    })
}

fn find_def(ty: Option<&MessageType>, name: &str) -> Result<FieldDef, EditError> {
    if let Some(d) = ty.and_then(|t| t.named(name)) {
        return Ok(d.clone());
    }
    let number = name
        .strip_prefix('#')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| EditError::NoField(name.to_string()))?;
    Ok(ty
        .and_then(|t| t.field(number))
        .cloned()
        .unwrap_or(FieldDef {
            number,
            name: name.to_string(),
            ty: FieldType::Uint,
            repeated: false,
        }))
}

/// Applies `change` at `path` (field names, and an index after each repeated field).
pub fn edit(
    m: &mut Message,
    ty: Option<&MessageType>,
    schema: &Schema,
    path: &[&str],
    change: &Change,
) -> Result<(), EditError> {
    let (name, rest) = path.split_first().ok_or(EditError::Empty)?;
    let def = find_def(ty, name)?;
    let (index, rest) = if def.repeated {
        let (i, rest) = rest
            .split_first()
            .ok_or_else(|| EditError::NeedsIndex(def.name.clone()))?;
        let i = i
            .parse()
            .map_err(|_| EditError::NeedsIndex(def.name.clone()))?;
        (Some(i), rest)
    } else {
        (None, rest)
    };
    let at: Vec<usize> = (0..m.fields.len())
        .filter(|&i| m.fields[i].number == def.number)
        .collect();
    let k = index.unwrap_or(0);
    if !rest.is_empty() {
        let pos = *at.get(k).ok_or(EditError::Index {
            field: def.name.clone(),
            index: k,
            len: at.len(),
        })?;
        let inner = match (&mut m.fields[pos].value, &def.ty) {
            (Value::Message(inner), FieldType::Message(n)) => (inner, schema.message(n)),
            (Value::Message(inner), _) => (inner, None),
            _ => return Err(EditError::Opaque(def.name.clone())),
        };
        return edit(inner.0, inner.1, schema, rest, change);
    }
    if at
        .iter()
        .any(|&i| matches!(m.fields[i].value, Value::Packed(_)))
    {
        return Err(EditError::Opaque(def.name.clone()));
    }
    match change {
        Change::Remove => {
            let pos = *at.get(k).ok_or(EditError::Index {
                field: def.name.clone(),
                index: k,
                len: at.len(),
            })?;
            m.fields.remove(pos);
        }
        Change::Set(j) => {
            let value = to_value(j, &def)?;
            let field = Field {
                number: def.number,
                value,
            };
            match at.get(k) {
                Some(&pos) => m.fields[pos] = field,
                None if k == at.len() => {
                    // After the field's last value, or where its number goes.
                    let pos = at.last().map(|p| p + 1).unwrap_or_else(|| {
                        m.fields
                            .iter()
                            .position(|f| f.number > def.number)
                            .unwrap_or(m.fields.len())
                    });
                    m.fields.insert(pos, field);
                }
                None => {
                    return Err(EditError::Index {
                        field: def.name.clone(),
                        index: k,
                        len: at.len(),
                    })
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::parse(
            "message t\n 1 n uint32\n 2 s sint32\n 3 name string\n 4 *addr uint32\n 5 sub u\n\
             message u\n 1 on bool\n",
        )
        .unwrap()
    }

    #[test]
    fn shows_names_types_and_unknown_fields() {
        let s = schema();
        let buf = [
            0x08, 7, 0x10, 3, 0x1a, 2, b'h', b'i', 0x20, 1, 0x20, 2, 0x2a, 2, 0x08, 1, 0x48, 9,
        ];
        let m = Message::decode(&buf, s.message("t"), &s).unwrap();
        let j = message_json(&m, s.message("t"), &s);
        assert_eq!(
            j,
            json!({"n": 7, "s": -2, "name": "hi", "addr": [1, 2], "sub": {"on": true}, "#9": 9})
        );
    }

    #[test]
    fn edits_in_place_insert_in_number_order_and_keep_everything_else() {
        let s = schema();
        let t = s.message("t");
        let buf = [0x08, 7, 0x20, 1, 0x20, 2, 0x2a, 0, 0x48, 9];
        let mut m = Message::decode(&buf, t, &s).unwrap();
        edit(&mut m, t, &s, &["addr", "1"], &Change::Set(json!(5))).unwrap();
        edit(&mut m, t, &s, &["name"], &Change::Set(json!("x"))).unwrap();
        edit(&mut m, t, &s, &["sub", "on"], &Change::Set(json!(true))).unwrap();
        edit(&mut m, t, &s, &["n"], &Change::Remove).unwrap();
        assert_eq!(
            m.encode(),
            [0x1a, 1, b'x', 0x20, 1, 0x20, 5, 0x2a, 2, 0x08, 1, 0x48, 9]
        );
    }

    #[test]
    fn bad_changes_say_what_is_wrong() {
        let s = schema();
        let t = s.message("t");
        let mut m = Message::default();
        let set = |v| Change::Set(v);
        let e = |m: &mut Message, p: &[&str], c: Change| edit(m, t, &s, p, &c).unwrap_err();
        assert_eq!(
            e(&mut m, &["nope"], set(json!(1))),
            EditError::NoField("nope".into())
        );
        assert!(matches!(
            e(&mut m, &["addr"], set(json!(1))),
            EditError::NeedsIndex(_)
        ));
        assert!(matches!(
            e(&mut m, &["addr", "3"], set(json!(1))),
            EditError::Index { .. }
        ));
        assert!(matches!(
            e(&mut m, &["n"], set(json!("x"))),
            EditError::Type { .. }
        ));
        assert!(matches!(
            e(&mut m, &["sub"], set(json!({}))),
            EditError::WholeMessage(_)
        ));
    }
}
