//! `define_ops!`: the op table's grammar. Each row defines one op once: its variant and
//! fields, each field's text format and how the minimizer simplifies it, whether the op
//! invalidates, whether and how it may race in a group, what it goes through (VM, fd,
//! mapping), its generation rate and its C
//! call. From the rows come `Op`, `OpKind`, `OpKind::spec`, `Op::kind`, `Op::args`,
//! `Op::from_args` and `Op::gmem_mut`; the text format, the C reproducer, the minimizer,
//! group membership and the generator's rates read those (wasmtime's `define_gc_ops!`).

/// See the module doc. A row:
///
/// ```text
/// /// doc
/// Name { field: type [Format, Shrink], … } => invalidates: bool, race: Race, uses: Uses, rate: N, c: "template";
/// ```
///
/// `Format` is `args::Format`'s variant (with its argument, `Flags(NAMES)`), `Shrink`
/// `args::Shrink`'s (default `Keep`); a row without fields is a unit variant, and a row
/// `Name(Type)` a variant the table gives no arguments (a group, written by its own rules).
macro_rules! define_ops {
    ($(
        $(#[$meta:meta])*
        $name:ident
        $({ $($field:ident : $ty:ty [$fmt:ident $(($fmtarg:expr))? $(, $shrink:ident)?]),* $(,)? })?
        $(($tuple:ty))?
        => invalidates: $inv:literal, race: $race:ident, uses: $uses:ident, rate: $rate:literal, c: $c:literal;
    )*) => {
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Op {
            $( $(#[$meta])* $name $({ $($field: $ty),* })? $(($tuple))?, )*
        }

        /// The kinds of op, for statistics and for "same divergence" during minimization.
        /// The snake_case names are the text format's op names (`create_gmem`,
        /// `modify_slot`, ...); `FromStr` parses them.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            strum::EnumCount, strum::EnumIter, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
        )]
        #[strum(serialize_all = "snake_case")]
        pub enum OpKind {
            $( $name, )*
        }

        const SPECS: [OpSpec; <OpKind as strum::EnumCount>::COUNT] = [
            $( OpSpec {
                kind: OpKind::$name,
                args: &[ $($( ArgSpec {
                    key: stringify!($field),
                    format: Format::$fmt $(($fmtarg))?,
                    shrink: define_ops!(@shrink $($shrink)?),
                    ty: <$ty as IsArg>::TYPE,
                } ),*)? ],
                invalidates: $inv,
                race: Race::$race,
                uses: Uses::$uses,
                rate: $rate,
                c: $c,
            }, )*
        ];

        impl Op {
            pub fn kind(&self) -> OpKind {
                match self {
                    $( Op::$name { .. } => OpKind::$name, )*
                }
            }

            /// The op's fields as values, in the order of `self.kind().spec().args`.
            pub fn args(&self) -> Vec<ArgValue> {
                match self {
                    $( Op::$name { $($($field,)*)? .. } => vec![ $($( IsArg::into_value(Clone::clone($field)) ),*)? ], )*
                }
            }

            /// The op of `kind` with these fields (as `args` gives them); `None` where a
            /// value has the wrong type or count, or the kind has no arguments in the table
            /// (a group).
            pub fn from_args(kind: OpKind, args: Vec<ArgValue>) -> Option<Op> {
                let mut values = args.into_iter();
                let op = match kind {
                    $( OpKind::$name => define_ops!(@make values $name $({ $($field: $ty),* })? $(($tuple))?), )*
                };
                values.next().is_none().then_some(op)
            }

            /// The file this op names, if any (a bind's only where its fd is one).
            pub fn gmem(&self) -> Option<GmemId> {
                match self {
                    $( Op::$name { $($($field,)*)? .. } => {
                        $($( if let Some(g) = IsArg::file($field) { return Some(g); } )*)?
                        None
                    } )*
                }
            }

            /// The file this op names, to rename it (minimization renumbers files).
            pub fn gmem_mut(&mut self) -> Option<&mut GmemId> {
                match self {
                    $( Op::$name { $($($field,)*)? .. } => {
                        $($( if let Some(g) = IsArg::file_mut($field) { return Some(g); } )*)?
                        None
                    } )*
                }
            }
        }
    };
    (@shrink) => { Shrink::Keep };
    (@shrink $shrink:ident) => { Shrink::$shrink };
    (@make $values:ident $name:ident { $($field:ident : $ty:ty),* }) => {
        Op::$name { $( $field: <$ty as IsArg>::from_value($values.next()?)? ),* }
    };
    (@make $values:ident $name:ident ($tuple:ty)) => { return None };
    (@make $values:ident $name:ident) => { Op::$name };
}
pub(super) use define_ops;
