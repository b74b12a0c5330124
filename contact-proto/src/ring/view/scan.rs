//! Where each value of a datagram already validated is: a scanner for valid JSON only,
//! which fills a [`RingView`] with slices of the datagram.

use std::borrow::Cow;

use super::{LIST, NUM, POINTER, RingView, TEXT};
use crate::DecodeError;

/// Where the values of a datagram already validated are: a scanner for valid JSON only.
pub(super) struct Scan<'a> {
    pub(super) s: &'a str,
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Scan<'a> {
    pub(super) fn broken(&self) -> DecodeError {
        // Unreachable on validated input; an error rather than a panic all the same.
        DecodeError::Json(format!("ring packet scan failed at byte {}", self.i))
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Result<u8, DecodeError> {
        self.ws();
        let c = *self.b.get(self.i).ok_or_else(|| self.broken())?;
        self.i += 1;
        Ok(c)
    }

    fn expect(&mut self, c: u8) -> Result<(), DecodeError> {
        if self.next()? == c {
            Ok(())
        } else {
            Err(self.broken())
        }
    }

    fn slice(&self, start: usize) -> Result<&'a str, DecodeError> {
        self.s.get(start..self.i).ok_or_else(|| self.broken())
    }

    /// Past the string starting at `self.i` (its opening quote).
    fn skip_string(&mut self) -> Result<(), DecodeError> {
        self.i += 1;
        loop {
            match self.b.get(self.i) {
                Some(b'\\') => self.i += 2,
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(_) => self.i += 1,
                None => return Err(self.broken()),
            }
        }
    }

    /// The next value, as it is on the wire.
    fn value(&mut self) -> Result<&'a str, DecodeError> {
        self.ws();
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'"') => self.skip_string()?,
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.b.get(self.i) {
                        Some(b'"') => {
                            self.skip_string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err(self.broken()),
                    }
                    self.i += 1;
                }
            }
            Some(_) => {
                while !matches!(
                    self.b.get(self.i),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
            }
            None => return Err(self.broken()),
        }
        self.slice(start)
    }

    fn key(&mut self) -> Result<Cow<'a, str>, DecodeError> {
        self.ws();
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.broken());
        }
        let start = self.i;
        self.skip_string()?;
        let raw = self.slice(start)?;
        let inner = &raw[1..raw.len() - 1];
        if inner.contains('\\') {
            Ok(Cow::Owned(serde_json::from_str::<String>(raw)?))
        } else {
            Ok(Cow::Borrowed(inner))
        }
    }

    pub(super) fn top_level(&mut self, view: &mut RingView<'a>) -> Result<(), DecodeError> {
        let mut index = None;
        self.expect(b'{')?;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            self.expect(b':')?;
            match &*key {
                LIST => self.members(&mut view.members)?,
                TEXT => view.raw_text = self.value()?,
                NUM | POINTER => {
                    self.value()?;
                }
                _ => {
                    let raw = self.value()?;
                    view.set_extra(key, raw, &mut index);
                }
            }
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(()),
                _ => return Err(self.broken()),
            }
        }
    }

    fn members(&mut self, members: &mut Vec<&'a str>) -> Result<(), DecodeError> {
        self.expect(b'[')?;
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            members.push(self.value()?);
            match self.next()? {
                b',' => continue,
                b']' => return Ok(()),
                _ => return Err(self.broken()),
            }
        }
    }
}
