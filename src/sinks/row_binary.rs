//! ClickHouse's `RowBinary` input format as a serde serializer, for the ClickHouse sink's rows:
//! a struct is its fields in order, integers and floats little-endian, a string or byte slice
//! its LEB128 length then its bytes, an `Option` a `Nullable` (one byte, 1 for NULL, then the
//! value), a sequence an `Array` (its LEB128 length then the elements), a tuple its elements
//! back to back (a `UUID` is two `u64`, high half first). Cheaper for ClickHouse to parse than
//! `JSONEachRow`, and for telemetryd to write.

use serde::ser::{self, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("RowBinary: {0}")]
pub struct RowBinaryError(String);

impl ser::Error for RowBinaryError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        RowBinaryError(msg.to_string())
    }
}

/// Appends `value` (a row struct) to `out` in `RowBinary`.
pub fn append<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), RowBinaryError> {
    value.serialize(&mut RowBinary(out))
}

/// A `UUID` column's value: its two 64-bit halves, high first, each little-endian.
pub fn uuid(id: &uuid::Uuid) -> (u64, u64) {
    id.as_u64_pair()
}

struct RowBinary<'a>(&'a mut Vec<u8>);

impl RowBinary<'_> {
    fn leb128(&mut self, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
}

fn unsupported(what: &str) -> RowBinaryError {
    RowBinaryError(format!("{what} has no RowBinary column type here"))
}

macro_rules! little_endian {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Result<(), RowBinaryError> {
            self.0.extend_from_slice(&v.to_le_bytes());
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for &mut RowBinary<'a> {
    type Ok = ();
    type Error = RowBinaryError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), RowBinaryError>;
    type SerializeMap = ser::Impossible<(), RowBinaryError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), RowBinaryError>;

    little_endian!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_f32: f32, serialize_f64: f64);

    fn serialize_bool(self, v: bool) -> Result<(), RowBinaryError> {
        self.0.push(u8::from(v));
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), RowBinaryError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), RowBinaryError> {
        self.serialize_bytes(v.as_bytes())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), RowBinaryError> {
        self.leb128(v.len());
        self.0.extend_from_slice(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), RowBinaryError> {
        self.0.push(1);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), RowBinaryError> {
        self.0.push(0);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), RowBinaryError> {
        Err(unsupported("()"))
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), RowBinaryError> {
        Err(unsupported(name))
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), RowBinaryError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RowBinaryError> {
        Err(unsupported(name))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self, RowBinaryError> {
        let len = len.ok_or_else(|| unsupported("a sequence of unknown length"))?;
        self.leb128(len);
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, RowBinaryError> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, RowBinaryError> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RowBinaryError> {
        Err(unsupported(name))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RowBinaryError> {
        Err(unsupported("a map"))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, RowBinaryError> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RowBinaryError> {
        Err(unsupported(name))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Sequences, tuples and structs are their elements back to back (a sequence's length went
/// first).
macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {
        $(impl<'a> ser::$trait for &mut RowBinary<'a> {
            type Ok = ();
            type Error = RowBinaryError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RowBinaryError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), RowBinaryError> {
                Ok(())
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl<'a> ser::SerializeStruct for &mut RowBinary<'a> {
    type Ok = ();
    type Error = RowBinaryError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), RowBinaryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Row<'a> {
        id: (u64, u64),
        name: &'a str,
        time: u32,
        missing: Option<&'a str>,
        present: Option<u32>,
        keys: Vec<&'a str>,
        value: f64,
    }

    #[test]
    fn rows_are_written_as_clickhouse_reads_them() {
        let id = uuid::Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let mut out = Vec::new();
        append(
            &mut out,
            &Row {
                id: uuid(&id),
                name: "é",
                time: 1,
                missing: None,
                present: Some(7),
                keys: vec!["a", "bc"],
                value: 0.5,
            },
        )
        .unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&[0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00]);
        want.extend_from_slice(&[0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88]);
        want.extend_from_slice(&[2, 0xc3, 0xa9]);
        want.extend_from_slice(&1u32.to_le_bytes());
        want.push(1);
        want.push(0);
        want.extend_from_slice(&7u32.to_le_bytes());
        want.extend_from_slice(&[2, 1, b'a', 2, b'b', b'c']);
        want.extend_from_slice(&0.5f64.to_le_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn long_strings_carry_a_multi_byte_length() {
        let mut out = Vec::new();
        append(&mut out, &"x".repeat(300)).unwrap();
        assert_eq!(&out[..2], &[0xac, 0x02]);
        assert_eq!(out.len(), 302);
    }

    #[test]
    fn maps_are_refused() {
        let map: std::collections::BTreeMap<&str, u8> = [("a", 1)].into();
        assert!(append(&mut Vec::new(), &map).is_err());
    }
}
