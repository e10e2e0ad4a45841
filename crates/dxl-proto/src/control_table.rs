//! Control-table items: the untyped descriptor both ends share, the typed register built on
//! it, and [`control_table!`](crate::control_table), which declares a family's map once.

use std::marker::PhantomData;

/// Whether the host may write a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One control-table item, untyped: what the emulator indexes by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    /// The e-manual's name, e.g. `Goal_Position`.
    pub name: &'static str,
    pub addr: u16,
    /// Width in bytes (1, 2 or 4).
    pub size: u16,
    pub access: Access,
    /// Two's complement (sign-extended when read).
    pub signed: bool,
    /// Accepted range for writes (inclusive); 0..=0 for read-only items.
    pub min: i64,
    pub max: i64,
}

impl Register {
    /// One past the last byte.
    pub const fn end(&self) -> u16 {
        self.addr + self.size
    }

    /// Whether byte `a` belongs to this item.
    pub const fn holds(&self, a: u16) -> bool {
        a >= self.addr && a < self.end()
    }

    /// The value of this item in a table image that starts at address 0 (0 if the image is
    /// too short).
    pub fn get(&self, table: &[u8]) -> i64 {
        let start = usize::from(self.addr);
        table
            .get(start..start + usize::from(self.size))
            .map_or(0, |b| decode_le(b, self.signed))
    }

    /// Stores `value` (truncated to the width) in a table image that starts at address 0.
    pub fn put(&self, table: &mut [u8], value: i64) {
        let start = usize::from(self.addr);
        let n = usize::from(self.size).min(8);
        if let Some(dst) = table.get_mut(start..start + n) {
            dst.copy_from_slice(&value.to_le_bytes()[..n]);
        }
    }
}

/// Decodes little-endian bytes (up to 8) as an integer, sign-extended when `signed`.
pub fn decode_le(src: &[u8], signed: bool) -> i64 {
    let mut buf = [0u8; 8];
    let n = src.len().min(8);
    buf[..n].copy_from_slice(&src[..n]);
    if signed && n > 0 && n < 8 && src[n - 1] & 0x80 != 0 {
        for b in buf.iter_mut().skip(n) {
            *b = 0xFF;
        }
    }
    i64::from_le_bytes(buf)
}

/// A Rust type a register holds: its width and signedness come from the type.
pub trait Value: Copy {
    const SIZE: u16;
    const SIGNED: bool;
    /// From the first `SIZE` little-endian bytes of `b`; `None` if `b` is shorter.
    fn from_le(b: &[u8]) -> Option<Self>;
    /// Appends the little-endian bytes.
    fn put_le(self, out: &mut Vec<u8>);
}

macro_rules! impl_value {
    ($($t:ty => $signed:expr),* $(,)?) => {$(
        impl Value for $t {
            const SIZE: u16 = std::mem::size_of::<$t>() as u16;
            const SIGNED: bool = $signed;
            fn from_le(b: &[u8]) -> Option<Self> {
                let bytes = b.get(..std::mem::size_of::<$t>())?.try_into().ok()?;
                Some(<$t>::from_le_bytes(bytes))
            }
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

impl_value!(u8 => false, u16 => false, u32 => false, i16 => true, i32 => true);

/// A register with its Rust type: decodes and encodes values without magic offsets.
#[derive(Debug, PartialEq, Eq)]
pub struct Reg<T> {
    pub reg: Register,
    _t: PhantomData<fn() -> T>,
}

// Manual impls: derive would demand `T: Clone`, which the marker does not need.
impl<T> Clone for Reg<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Reg<T> {}

impl<T: Value> Reg<T> {
    /// Used by [`control_table!`](crate::control_table); `min..=max` is the write range.
    pub const fn new(name: &'static str, addr: u16, access: Access, min: i64, max: i64) -> Self {
        Self {
            reg: Register {
                name,
                addr,
                size: T::SIZE,
                access,
                signed: T::SIGNED,
                min,
                max,
            },
            _t: PhantomData,
        }
    }

    pub const fn addr(&self) -> u16 {
        self.reg.addr
    }

    pub const fn size(&self) -> u16 {
        self.reg.size
    }

    /// The value at the start of `b` (a reply to a read of exactly this register).
    pub fn decode(&self, b: &[u8]) -> Option<T> {
        T::from_le(b)
    }

    /// The value inside `block`, bytes read starting at address `block_addr`.
    pub fn decode_in(&self, block: &[u8], block_addr: u16) -> Option<T> {
        let off = usize::from(self.reg.addr.checked_sub(block_addr)?);
        T::from_le(block.get(off..)?)
    }

    /// The little-endian bytes of `v`, as a write carries them.
    pub fn encode(&self, v: T) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::from(T::SIZE));
        v.put_le(&mut out);
        out
    }
}

/// A run of contiguous registers read in one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub addr: u16,
    pub len: u16,
}

impl Block {
    /// From the first byte of `first` to the last byte of `last`.
    pub const fn spanning(first: Register, last: Register) -> Self {
        Self {
            addr: first.addr,
            len: last.addr + last.size - first.addr,
        }
    }

    /// Just one register.
    pub const fn of(r: Register) -> Self {
        Self {
            addr: r.addr,
            len: r.size,
        }
    }
}

/// Declares a model family's control table once, in the style of rustypot's
/// `generate_servo!`: one row per item, `NAME = address: type, access, "E-manual name";`.
/// Access is `R` (read-only) or `RW(min, max)` (writable, with its inclusive write range).
/// The type fixes width and sign.
///
/// Generates, in the invoking module: a typed [`Reg`] constant per item, `addr::NAME` (the
/// plain address, for bus calls that take one), `REGISTERS` (every item, by address) and
/// `register_at` (the item holding a byte).
#[macro_export]
macro_rules! control_table {
    (@access R) => { $crate::control_table::Access::ReadOnly };
    (@access RW) => { $crate::control_table::Access::ReadWrite };
    (@range R) => { (0, 0) };
    (@range RW $min:expr, $max:expr) => { ($min, $max) };
    (
        $(
            $(#[$meta:meta])*
            $name:ident = $addr:literal : $ty:ty, $acc:ident $(($min:expr, $max:expr))?, $label:literal;
        )*
    ) => {
        $(
            $(#[$meta])*
            pub const $name: $crate::control_table::Reg<$ty> = {
                let (min, max): (i64, i64) = $crate::control_table!(@range $acc $($min, $max)?);
                $crate::control_table::Reg::new(
                    $label,
                    $addr,
                    $crate::control_table!(@access $acc),
                    min,
                    max,
                )
            };
        )*

        /// Plain addresses of the items above.
        pub mod addr {
            $(pub const $name: u16 = $addr;)*
        }

        /// Every item, in address order.
        pub const REGISTERS: &[$crate::control_table::Register] = &[$($name.reg),*];

        /// The item that holds byte `a`, if any.
        pub fn register_at(a: u16) -> Option<&'static $crate::control_table::Register> {
            REGISTERS.iter().find(|r| r.holds(a))
        }
    };
}
