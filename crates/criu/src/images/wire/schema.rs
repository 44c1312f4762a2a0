//! The names and types of the fields of CRIU's image messages, from a small text format
//! (`images.schema`):
//!
//! ```text
//! message pstree_entry
//!  1 pid uint32
//!  5 *threads uint32        (a `*` marks a repeated field)
//!  3 root_ids task_kobj_ids_entry   (any other type is a message's name)
//! ```
//!
//! Fields the schema does not name still decode (by number) and round-trip.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    Uint,
    /// int32/int64: two's complement in a varint.
    Int,
    /// sint32/sint64: zigzag.
    Sint,
    Bool,
    String,
    Bytes,
    Fixed64,
    Fixed32,
    Message(String),
}

impl FieldType {
    fn parse(s: &str) -> Self {
        match s {
            "uint32" | "uint64" | "enum" => FieldType::Uint,
            "int32" | "int64" => FieldType::Int,
            "sint32" | "sint64" => FieldType::Sint,
            "bool" => FieldType::Bool,
            "string" => FieldType::String,
            "bytes" => FieldType::Bytes,
            "fixed64" => FieldType::Fixed64,
            "fixed32" => FieldType::Fixed32,
            other => FieldType::Message(other.to_string()),
        }
    }

    pub fn is_varint(&self) -> bool {
        matches!(
            self,
            FieldType::Uint | FieldType::Int | FieldType::Sint | FieldType::Bool
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    pub number: u32,
    pub name: String,
    pub ty: FieldType,
    pub repeated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageType {
    pub name: String,
    pub fields: Vec<FieldDef>,
}

impl MessageType {
    pub fn field(&self, number: u32) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.number == number)
    }

    pub fn named(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Schema {
    messages: HashMap<String, MessageType>,
}

impl Schema {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut messages = HashMap::new();
        let mut current: Option<MessageType> = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["message", name] => {
                    if let Some(m) = current.take() {
                        messages.insert(m.name.clone(), m);
                    }
                    current = Some(MessageType {
                        name: (*name).to_string(),
                        fields: Vec::new(),
                    });
                }
                [number, name, ty] => {
                    let m = current
                        .as_mut()
                        .ok_or(format!("line {}: a field outside a message", i + 1))?;
                    let number = number
                        .parse()
                        .map_err(|_| format!("line {}: bad field number", i + 1))?;
                    let (repeated, name) = match name.strip_prefix('*') {
                        Some(n) => (true, n),
                        None => (false, *name),
                    };
                    m.fields.push(FieldDef {
                        number,
                        name: name.to_string(),
                        ty: FieldType::parse(ty),
                        repeated,
                    });
                }
                _ => return Err(format!("line {}: cannot read '{line}'", i + 1)),
            }
        }
        if let Some(m) = current.take() {
            messages.insert(m.name.clone(), m);
        }
        Ok(Self { messages })
    }

    /// The schema of CRIU 4.x's images.
    pub fn criu() -> &'static Schema {
        static S: OnceLock<Schema> = OnceLock::new();
        S.get_or_init(|| Schema::parse(include_str!("images.schema")).unwrap_or_default())
    }

    pub fn message(&self, name: &str) -> Option<&MessageType> {
        self.messages.get(name)
    }

    /// Names of message types used by fields but not defined (a check for the schema).
    pub fn undefined(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .messages
            .values()
            .flat_map(|m| &m.fields)
            .filter_map(|f| match &f.ty {
                FieldType::Message(n) if !self.messages.contains_key(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_criu_schema_parses_and_every_message_it_names_is_defined() {
        let text = include_str!("images.schema");
        let s = Schema::parse(text).unwrap();
        assert!(s.message("core_entry").is_some());
        assert_eq!(s.undefined(), Vec::<String>::new());
        let inet = s.message("inet_sk_entry").unwrap();
        assert!(inet.named("src_addr").unwrap().repeated);
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(Schema::parse(" 1 a uint32").unwrap_err().contains("line 1"));
        assert!(Schema::parse("message m\n x a uint32")
            .unwrap_err()
            .contains("line 2"));
    }
}
