//! What a poster template is: a canvas, an optional background image and positioned elements,
//! parsed from text as typed (a form or the API) into a checked [`TemplateSpec`], with one field
//! error per bad value. Pure: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;

/// The canvas of a new template: a phone screen, portrait.
pub const DEFAULT_WIDTH: u32 = 1080;
pub const DEFAULT_HEIGHT: u32 = 1920;
/// Sides of a canvas, in pixels. A 1440 × 2560 canvas is 14.7 MB of pixels while it is drawn.
pub const MIN_SIDE: u32 = 100;
pub const MAX_WIDTH: u32 = 1440;
pub const MAX_HEIGHT: u32 = 2560;
/// Elements on one template.
pub const MAX_ELEMENTS: usize = 30;
/// Characters of one text block (before its placeholders are filled).
pub const MAX_TEXT_CHARS: usize = 500;
pub const MIN_FONT: u32 = 8;
pub const MAX_FONT: u32 = 200;
pub const MAX_LINES: u32 = 20;
/// The placeholders a text block may hold; `{name}` is the member's name, the others come from
/// whoever asks for the poster (a campaign, a check-in).
pub const PLACEHOLDERS: [&str; 6] = ["name", "campaign", "streak", "days", "invites", "date"];
/// The element kinds, as the API and forms name them.
pub const KINDS: &[&str] = &["avatar", "nickname", "text", "qr", "rect"];
pub const ALIGNS: &[&str] = &["left", "center", "right"];
pub const SHAPES: &[&str] = &["round", "square"];

/// An RGBA colour, written `#rgb`, `#rrggbb` or `#rrggbbaa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgba(pub [u8; 4]);

impl Rgba {
    pub const WHITE: Rgba = Rgba([255, 255, 255, 255]);
    pub const BLACK: Rgba = Rgba([0, 0, 0, 255]);

    pub fn parse(s: &str) -> Option<Rgba> {
        let hex = s.trim().strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        let nibble = |i: usize| u8::from_str_radix(&hex[i..i + 1], 16).ok().map(|v| v * 17);
        match hex.len() {
            3 => Some(Rgba([nibble(0)?, nibble(1)?, nibble(2)?, 255])),
            6 => Some(Rgba([byte(0)?, byte(2)?, byte(4)?, 255])),
            8 => Some(Rgba([byte(0)?, byte(2)?, byte(4)?, byte(6)?])),
            _ => None,
        }
    }

    /// `#rrggbb`, or `#rrggbbaa` when not opaque.
    pub fn hex(&self) -> String {
        let [r, g, b, a] = self.0;
        if a == 255 {
            format!("#{r:02x}{g:02x}{b:02x}")
        } else {
            format!("#{r:02x}{g:02x}{b:02x}{a:02x}")
        }
    }
}

impl Serialize for Rgba {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Rgba {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rgba::parse(&s).ok_or_else(|| serde::de::Error::custom("a colour like #rrggbb"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    Left,
    Center,
    Right,
}

impl Align {
    pub fn as_str(self) -> &'static str {
        match self {
            Align::Left => "left",
            Align::Center => "center",
            Align::Right => "right",
        }
    }
    fn parse(s: &str) -> Option<Align> {
        match s.trim() {
            "left" => Some(Align::Left),
            "center" => Some(Align::Center),
            "right" => Some(Align::Right),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Round,
    Square,
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Round => "round",
            Shape::Square => "square",
        }
    }
}

/// Text as a poster draws it: a box `width` wide at (x, y), wrapped, at most `max_lines` lines,
/// the last one ending in "…" when the text is longer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextStyle {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub font_size: u32,
    pub color: Rgba,
    pub align: Align,
    pub max_lines: u32,
    pub bold: bool,
}

/// One positioned element. Rectangles and text without placeholders are decorations: they are
/// drawn once per template version into the cached static layer, under the member's elements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Element {
    /// The member's picture (or their initial on a coloured disc), `size` pixels square.
    Avatar { x: i32, y: i32, size: u32, shape: Shape },
    /// The member's name.
    Nickname {
        #[serde(flatten)]
        style: TextStyle,
    },
    /// A text block; `{name}`, `{campaign}`, `{streak}`, `{days}`, `{invites}`, `{date}` are filled in.
    Text {
        #[serde(flatten)]
        style: TextStyle,
        text: String,
    },
    /// A QR code of the poster's link (the member's personal link), dark modules in `color` on
    /// white, with its quiet zone inside `size`.
    Qr { x: i32, y: i32, size: u32, color: Rgba },
    /// A filled rectangle (a card behind text), optionally with round corners.
    Rect { x: i32, y: i32, width: u32, height: u32, color: Rgba, radius: u32 },
}

impl Element {
    pub fn kind(&self) -> &'static str {
        match self {
            Element::Avatar { .. } => "avatar",
            Element::Nickname { .. } => "nickname",
            Element::Text { .. } => "text",
            Element::Qr { .. } => "qr",
            Element::Rect { .. } => "rect",
        }
    }

    /// Drawn the same on every poster of the template: part of the static layer.
    pub fn is_static(&self) -> bool {
        match self {
            Element::Rect { .. } => true,
            Element::Text { text, .. } => !has_placeholder(text),
            _ => false,
        }
    }
}

/// A checked template layout: what is stored (as JSON) and drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub background_color: Rgba,
    pub elements: Vec<Element>,
}

impl Layout {
    /// A starting point for a new template: avatar and name at the top, a line of text, a QR
    /// code at the bottom.
    pub fn sample() -> Layout {
        let text = |y: i32, size: u32, lines: u32, text: &str| Element::Text {
            style: TextStyle {
                x: 80,
                y,
                width: 920,
                font_size: size,
                color: Rgba([0x22, 0x22, 0x22, 255]),
                align: Align::Left,
                max_lines: lines,
                bold: false,
            },
            text: text.into(),
        };
        Layout {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            background_color: Rgba([0xfb, 0xf7, 0xef, 255]),
            elements: vec![
                Element::Rect {
                    x: 40,
                    y: 40,
                    width: 1000,
                    height: 1840,
                    color: Rgba([255, 255, 255, 230]),
                    radius: 32,
                },
                Element::Avatar { x: 80, y: 100, size: 160, shape: Shape::Round },
                Element::Nickname {
                    style: TextStyle {
                        x: 280,
                        y: 140,
                        width: 720,
                        font_size: 56,
                        color: Rgba([0x11, 0x11, 0x11, 255]),
                        align: Align::Left,
                        max_lines: 1,
                        bold: true,
                    },
                },
                text(330, 48, 3, "我是{name}，邀请你加入{campaign}！扫码进群，一起打卡。"),
                text(560, 36, 2, "已连续打卡 {streak} 天，累计 {days} 天 · {date}"),
                Element::Qr { x: 340, y: 1300, size: 400, color: Rgba::BLACK },
                Element::Text {
                    style: TextStyle {
                        x: 80,
                        y: 1740,
                        width: 920,
                        font_size: 32,
                        color: Rgba([0x66, 0x66, 0x66, 255]),
                        align: Align::Center,
                        max_lines: 1,
                        bold: false,
                    },
                    text: "长按识别二维码".into(),
                },
            ],
        }
    }
}

/// A template's fields as typed: every value is text, so that a form can be shown again as it
/// was sent. Blank values take defaults.
#[derive(Clone, Debug, Default)]
pub struct TemplateRaw {
    pub name: String,
    pub group_id: String,
    pub width: String,
    pub height: String,
    pub background_color: String,
    pub elements: Vec<ElementRaw>,
}

/// One element's fields as typed; which ones apply depends on `kind`. A blank `kind` is an
/// empty form row and is skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ElementRaw {
    pub kind: String,
    pub x: String,
    pub y: String,
    /// Avatar and QR size, text box width, rectangle width.
    pub w: String,
    /// Rectangle height.
    pub h: String,
    pub font_size: String,
    pub color: String,
    pub align: String,
    pub max_lines: String,
    pub bold: bool,
    pub shape: String,
    pub radius: String,
    pub text: String,
}

/// A checked template: its name, the group it belongs to (None: shared by every operator) and
/// its layout.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateSpec {
    pub name: String,
    pub group_id: Option<i64>,
    pub layout: Layout,
}

/// `{word}` placeholders of `text`, in order.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) if after[..j].chars().all(|c| c.is_ascii_lowercase() || c == '_') && j > 0 => {
                out.push(&after[..j]);
                rest = &after[j + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

pub fn has_placeholder(text: &str) -> bool {
    placeholders(text).iter().any(|p| PLACEHOLDERS.contains(p))
}

/// `text` with its placeholders filled from `vars` (a missing value leaves the placeholder
/// empty).
pub fn fill(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for p in PLACEHOLDERS {
        let key = format!("{{{p}}}");
        if out.contains(&key) {
            out = out.replace(&key, vars.get(p).map(String::as_str).unwrap_or(""));
        }
    }
    out
}

impl TemplateRaw {
    /// A stored template as the form shows it.
    pub fn of(name: &str, group_id: Option<i64>, layout: &Layout) -> TemplateRaw {
        TemplateRaw {
            name: name.to_string(),
            group_id: group_id.map(|g| g.to_string()).unwrap_or_default(),
            width: layout.width.to_string(),
            height: layout.height.to_string(),
            background_color: layout.background_color.hex(),
            elements: layout.elements.iter().map(ElementRaw::of).collect(),
        }
    }

    pub fn parse(&self) -> Result<TemplateSpec, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = crate::domain::required_text(&self.name, 120, "name", &mut errors);
        let group_id = match self.group_id.trim() {
            "" => None,
            g => match g.parse::<i64>() {
                Ok(id) if id > 0 => Some(id),
                _ => {
                    errors.add("group_id", "error.number_range");
                    None
                }
            },
        };
        let width = number(&self.width, DEFAULT_WIDTH, MIN_SIDE, MAX_WIDTH, "width", &mut errors);
        let height = number(&self.height, DEFAULT_HEIGHT, MIN_SIDE, MAX_HEIGHT, "height", &mut errors);
        let background_color = colour(&self.background_color, Rgba::WHITE, "background_color", &mut errors);
        let rows: Vec<(usize, &ElementRaw)> =
            self.elements.iter().enumerate().filter(|(_, e)| !e.kind.trim().is_empty()).collect();
        if rows.len() > MAX_ELEMENTS {
            errors.add("elements", "posters.error.too_many_elements");
        }
        let elements = rows
            .into_iter()
            .take(MAX_ELEMENTS)
            .filter_map(|(i, e)| e.parse(&format!("elements[{i}]"), width, height, &mut errors))
            .collect();
        let layout = Layout { width, height, background_color, elements };
        if errors.is_empty() {
            Ok(TemplateSpec { name, group_id, layout })
        } else {
            Err(errors)
        }
    }
}

/// A whole number in `min..=max`, `default` when blank.
fn number(input: &str, default: u32, min: u32, max: u32, field: &str, errors: &mut FieldErrors) -> u32 {
    let s = input.trim();
    if s.is_empty() {
        return default;
    }
    match s.parse::<i64>() {
        Ok(n) if n >= min as i64 && n <= max as i64 => n as u32,
        Ok(_) => {
            errors.add(field, "posters.error.out_of_range");
            default
        }
        Err(_) => {
            errors.add(field, "error.number_range");
            default
        }
    }
}

fn colour(input: &str, default: Rgba, field: &str, errors: &mut FieldErrors) -> Rgba {
    let s = input.trim();
    if s.is_empty() {
        return default;
    }
    Rgba::parse(s).unwrap_or_else(|| {
        errors.add(field, "posters.error.colour");
        default
    })
}

impl ElementRaw {
    pub fn of(e: &Element) -> ElementRaw {
        let mut raw = ElementRaw { kind: e.kind().to_string(), ..ElementRaw::default() };
        let text_style = |raw: &mut ElementRaw, s: &TextStyle| {
            raw.x = s.x.to_string();
            raw.y = s.y.to_string();
            raw.w = s.width.to_string();
            raw.font_size = s.font_size.to_string();
            raw.color = s.color.hex();
            raw.align = s.align.as_str().to_string();
            raw.max_lines = s.max_lines.to_string();
            raw.bold = s.bold;
        };
        match e {
            Element::Avatar { x, y, size, shape } => {
                raw.x = x.to_string();
                raw.y = y.to_string();
                raw.w = size.to_string();
                raw.shape = shape.as_str().to_string();
            }
            Element::Nickname { style } => text_style(&mut raw, style),
            Element::Text { style, text } => {
                text_style(&mut raw, style);
                raw.text = text.clone();
            }
            Element::Qr { x, y, size, color } => {
                raw.x = x.to_string();
                raw.y = y.to_string();
                raw.w = size.to_string();
                raw.color = color.hex();
            }
            Element::Rect { x, y, width, height, color, radius } => {
                raw.x = x.to_string();
                raw.y = y.to_string();
                raw.w = width.to_string();
                raw.h = height.to_string();
                raw.color = color.hex();
                raw.radius = radius.to_string();
            }
        }
        raw
    }

    /// The element, or None with errors on `{prefix}.{field}`. Each element lies inside the
    /// canvas (`cw` × `ch`): its top-left corner on it, its box within it.
    fn parse(&self, prefix: &str, cw: u32, ch: u32, errors: &mut FieldErrors) -> Option<Element> {
        let before = errors.0.len() + errors.0.values().map(Vec::len).sum::<usize>();
        let f = |name: &str| format!("{prefix}.{name}");
        let kind = self.kind.trim();
        if !KINDS.contains(&kind) {
            errors.add_choice(&f("type"), KINDS);
            return None;
        }
        let x = number(&self.x, 0, 0, cw - 1, &f("x"), errors) as i32;
        let y = number(&self.y, 0, 0, ch - 1, &f("y"), errors) as i32;
        let room_w = cw - x as u32;
        let room_h = ch - y as u32;
        let outside = |errors: &mut FieldErrors, field: &str| errors.add(&f(field), "posters.error.outside");
        let side = |errors: &mut FieldErrors, default: u32, min: u32| {
            let v = number(&self.w, default.min(room_w).min(room_h).max(min), min, cw.max(ch), &f("w"), errors);
            if v > room_w || v > room_h {
                outside(errors, "w");
            }
            v
        };
        let style = |errors: &mut FieldErrors, default_lines: u32| {
            let width = number(&self.w, room_w, 1, cw, &f("w"), errors);
            if width > room_w {
                outside(errors, "w");
            }
            let font_size = number(&self.font_size, 40, MIN_FONT, MAX_FONT, &f("font_size"), errors);
            if y as u32 + font_size > ch {
                outside(errors, "font_size");
            }
            let align = match self.align.trim() {
                "" => Align::Left,
                a => Align::parse(a).unwrap_or_else(|| {
                    errors.add_choice(&f("align"), ALIGNS);
                    Align::Left
                }),
            };
            TextStyle {
                x,
                y,
                width,
                font_size,
                color: colour(&self.color, Rgba([0x22, 0x22, 0x22, 255]), &f("color"), errors),
                align,
                max_lines: number(&self.max_lines, default_lines, 1, MAX_LINES, &f("max_lines"), errors),
                bold: self.bold,
            }
        };
        let element = match kind {
            "avatar" => {
                let size = side(errors, 160, 16);
                let shape = match self.shape.trim() {
                    "" | "round" => Shape::Round,
                    "square" => Shape::Square,
                    _ => {
                        errors.add_choice(&f("shape"), SHAPES);
                        Shape::Round
                    }
                };
                Element::Avatar { x, y, size, shape }
            }
            "nickname" => Element::Nickname { style: style(errors, 1) },
            "text" => {
                let style = style(errors, 3);
                let text = self.text.trim().to_string();
                if text.is_empty() {
                    errors.add(&f("text"), "error.required");
                } else if text.chars().count() > MAX_TEXT_CHARS {
                    errors.add(&f("text"), "error.too_long");
                }
                crate::domain::no_nul(&text, &f("text"), errors);
                if placeholders(&text).iter().any(|p| !PLACEHOLDERS.contains(p)) {
                    errors.add(&f("text"), "posters.error.placeholder");
                }
                Element::Text { style, text }
            }
            "qr" => {
                // Smaller than 96 px a phone camera reads badly at arm's length.
                let size = side(errors, 320, 96);
                let color = colour(&self.color, Rgba::BLACK, &f("color"), errors);
                if color.0[3] < 255 || luminance(color) > 0.5 {
                    errors.add(&f("color"), "posters.error.qr_colour");
                }
                Element::Qr { x, y, size, color }
            }
            _ => {
                let width = number(&self.w, room_w, 1, cw, &f("w"), errors);
                let height = number(&self.h, 100.min(room_h), 1, ch, &f("h"), errors);
                if width > room_w {
                    outside(errors, "w");
                }
                if height > room_h {
                    outside(errors, "h");
                }
                let radius = number(&self.radius, 0, 0, 1000, &f("radius"), errors);
                Element::Rect {
                    x,
                    y,
                    width,
                    height,
                    color: colour(&self.color, Rgba::WHITE, &f("color"), errors),
                    radius,
                }
            }
        };
        let after = errors.0.len() + errors.0.values().map(Vec::len).sum::<usize>();
        (after == before).then_some(element)
    }
}

/// Relative luminance (0 black … 1 white): a QR code's dark modules must be dark.
fn luminance(c: Rgba) -> f32 {
    let [r, g, b, _] = c.0;
    (0.2126 * r as f32 + 0.7152 * g as f32 + 0.0722 * b as f32) / 255.0
}

/// The placeholder values a caller may give a poster link (`{name}` comes from the name).
pub const LINK_VARS: [&str; 5] = ["campaign", "streak", "days", "invites", "date"];

/// A public poster link as asked for: whose poster (a member, or just a name), what its QR code
/// says, and the placeholder values.
#[derive(Clone, Debug, Default)]
pub struct LinkRaw {
    pub member_id: Option<i64>,
    pub name: String,
    pub qr_url: String,
    pub vars: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    pub member_id: Option<i64>,
    /// Empty with a member: the member's name is used.
    pub name: String,
    pub qr_url: String,
    pub vars: BTreeMap<String, String>,
}

impl LinkRaw {
    pub fn parse(&self) -> Result<LinkSpec, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = if self.member_id.is_some() {
            crate::domain::optional_text(&self.name, 120, "name", &mut errors)
        } else {
            crate::domain::required_text(&self.name, 120, "name", &mut errors)
        };
        if self.member_id.is_some_and(|m| m <= 0) {
            errors.add("member_id", "error.number_range");
        }
        let qr_url = self.qr_url.trim().to_string();
        if qr_url.is_empty() {
            errors.add("qr_url", "error.required");
        } else if qr_url.len() > 1000 {
            errors.add("qr_url", "error.too_long");
        } else if !crate::domain::group::valid_http_url(&qr_url) {
            errors.add("qr_url", "error.url");
        }
        crate::domain::no_nul(&qr_url, "qr_url", &mut errors);
        let mut vars = BTreeMap::new();
        for (k, v) in &self.vars {
            let field = format!("vars.{k}");
            if !LINK_VARS.contains(&k.as_str()) {
                errors.add_choice(&field, &LINK_VARS);
                continue;
            }
            let v = crate::domain::optional_text(v, 100, &field, &mut errors);
            if !v.is_empty() {
                vars.insert(k.clone(), v);
            }
        }
        if errors.is_empty() {
            Ok(LinkSpec { member_id: self.member_id, name, qr_url, vars })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_of(layout: &Layout) -> TemplateRaw {
        TemplateRaw::of("Spring", None, layout)
    }

    #[test]
    fn colours_read_short_long_and_translucent_forms() {
        assert_eq!(Rgba::parse("#fff"), Some(Rgba::WHITE));
        assert_eq!(Rgba::parse("#102030"), Some(Rgba([16, 32, 48, 255])));
        assert_eq!(Rgba::parse("#10203080"), Some(Rgba([16, 32, 48, 128])));
        assert_eq!(Rgba::parse("102030"), None);
        assert_eq!(Rgba::parse("#12345"), None);
        assert_eq!(Rgba::parse("#ééé"), None);
        assert_eq!(Rgba([16, 32, 48, 128]).hex(), "#10203080");
    }

    #[test]
    fn the_sample_round_trips_through_the_form() {
        let sample = Layout::sample();
        let spec = raw_of(&sample).parse().unwrap();
        assert_eq!(spec.layout, sample);
        let json = serde_json::to_string(&sample).unwrap();
        assert_eq!(serde_json::from_str::<Layout>(&json).unwrap(), sample);
        assert!(json.contains("\"type\":\"avatar\""), "{json}");
    }

    #[test]
    fn placeholders_are_found_filled_and_unknown_ones_refused() {
        assert_eq!(placeholders("我是{name}，{days} 天 {x-y} {}"), vec!["name", "days"]);
        let vars = BTreeMap::from([("name".to_string(), "阿明".to_string())]);
        assert_eq!(fill("我是{name}{campaign}", &vars), "我是阿明");
        let mut raw = raw_of(&Layout::sample());
        raw.elements[3].text = "hello {nmae}".into();
        let e = raw.parse().unwrap_err();
        assert!(e.has("elements[3].text"), "{e:?}");
    }

    #[test]
    fn elements_must_lie_on_the_canvas_and_every_bad_value_is_named() {
        let mut raw = raw_of(&Layout::sample());
        raw.elements[1].x = "1000".into(); // avatar of 160 at x 1000 on 1080
        raw.elements[2].font_size = "2".into();
        raw.elements[5].color = "#ffffff".into(); // a white QR code
        raw.elements[0].kind = "circle".into();
        raw.width = "99999".into();
        let e = raw.parse().unwrap_err();
        for f in ["elements[1].w", "elements[2].font_size", "elements[5].color", "elements[0].type", "width"] {
            assert!(e.has(f), "{f}: {e:?}");
        }
    }

    #[test]
    fn blank_rows_are_skipped_and_too_many_elements_refused() {
        let mut raw = raw_of(&Layout::sample());
        raw.elements.push(ElementRaw::default());
        assert_eq!(raw.parse().unwrap().layout.elements.len(), 7);
        let rect = ElementRaw { kind: "rect".into(), ..ElementRaw::default() };
        raw.elements = vec![rect; MAX_ELEMENTS + 1];
        assert!(raw.parse().unwrap_err().has("elements"));
    }

    #[test]
    fn links_need_a_name_or_a_member_an_http_link_and_known_values() {
        let ok = LinkRaw { name: "阿明".into(), qr_url: "https://x.example/l/a?r=1".into(), ..LinkRaw::default() };
        assert!(ok.parse().is_ok());
        let mut bad = LinkRaw { qr_url: "javascript:alert(1)".into(), ..LinkRaw::default() };
        bad.vars.insert("prize".into(), "x".into());
        bad.vars.insert("streak".into(), "9".repeat(101));
        let e = bad.parse().unwrap_err();
        for f in ["name", "qr_url", "vars.prize", "vars.streak"] {
            assert!(e.has(f), "{f}: {e:?}");
        }
        let member = LinkRaw { member_id: Some(5), qr_url: "https://x.example/".into(), ..LinkRaw::default() };
        assert_eq!(member.parse().unwrap().name, "");
    }

    #[test]
    fn decorations_are_static_and_member_elements_are_not() {
        let s = Layout::sample();
        let statics: Vec<_> = s.elements.iter().filter(|e| e.is_static()).map(Element::kind).collect();
        assert_eq!(statics, ["rect", "text"]);
    }
}
