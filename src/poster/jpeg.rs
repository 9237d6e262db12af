//! JPEG posters by splicing. A poster is its template's static layer with a few rectangles drawn
//! over it (avatar, name, text blocks, QR), so most of its JPEG is the static layer's JPEG.
//!
//! Every poster JPEG is written the same way: baseline, quality 85, 4:2:0 (16 × 16 MCUs), the
//! standard Huffman and quantisation tables (fixed: nothing depends on the picture), and a
//! restart marker (DRI) every `interval_mcus` MCUs, a number that divides the MCUs of a row, so
//! restart intervals tile the picture in a grid of `16·k × 16` pixel cells. After a restart
//! the DC predictions start again, so a cell's bytes depend on its own pixels only.
//!
//! Per template version the static layer is encoded once and its entropy-coded data kept cell by
//! cell (`Rows`). A poster re-encodes only the rectangles of cells its elements touch (each as a
//! small JPEG of its own with the same settings, whose cells come out byte for byte as in a full
//! encode) and copies the rest, numbering the RSTn markers again (mod 8). The result is the
//! same bytes as `encode_full` of the whole poster.

use super::render::RenderError;

/// The poster's JPEG quality.
pub const QUALITY: u8 = 85;
/// Pixels of an MCU side (4:2:0).
const MCU: u32 = 16;

/// A rectangle of grid cells: columns of restart intervals, rows of MCUs (end exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    pub col0: u32,
    pub col1: u32,
    pub row0: u32,
    pub row1: u32,
}

impl Cells {
    fn overlaps(&self, o: &Cells) -> bool {
        self.col0 < o.col1 && o.col0 < self.col1 && self.row0 < o.row1 && o.row0 < self.row1
    }
    fn union(&self, o: &Cells) -> Cells {
        Cells {
            col0: self.col0.min(o.col0),
            col1: self.col1.max(o.col1),
            row0: self.row0.min(o.row0),
            row1: self.row1.max(o.row1),
        }
    }
}

/// The restart-interval grid of a canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub width: u32,
    pub height: u32,
    /// MCUs per restart interval.
    pub k: u32,
    /// Intervals per MCU row.
    pub cols: u32,
    /// MCU rows.
    pub rows: u32,
}

impl Grid {
    pub fn new(width: u32, height: u32) -> Grid {
        let mcus = width.div_ceil(MCU);
        // Small cells re-encode little; each restart costs about 2.5 bytes.
        let k = [4, 3, 2, 1].into_iter().find(|k| mcus.is_multiple_of(*k)).unwrap_or(1);
        Grid { width, height, k, cols: mcus / k, rows: height.div_ceil(MCU) }
    }

    /// Width of a cell in pixels.
    pub fn cell_width(&self) -> u32 {
        self.k * MCU
    }

    /// The cells covering the pixels `x0..x1 × y0..y1` (clipped to the canvas); None if empty.
    pub fn cover(&self, x0: i32, y0: i32, x1: i32, y1: i32) -> Option<Cells> {
        let clip = |v: i32, max: u32| v.clamp(0, max as i32) as u32;
        let (x0, x1, y0, y1) =
            (clip(x0, self.width), clip(x1, self.width), clip(y0, self.height), clip(y1, self.height));
        if x0 >= x1 || y0 >= y1 {
            return None;
        }
        let cw = self.cell_width();
        Some(Cells { col0: x0 / cw, col1: x1.div_ceil(cw), row0: y0 / MCU, row1: y1.div_ceil(MCU) })
    }

    /// The pixels of a rectangle of cells: x, y, width, height (the last column and row end at
    /// the canvas's edge).
    pub fn pixels(&self, c: &Cells) -> (u32, u32, u32, u32) {
        let cw = self.cell_width();
        let (x0, y0) = (c.col0 * cw, c.row0 * MCU);
        let (x1, y1) = ((c.col1 * cw).min(self.width), (c.row1 * MCU).min(self.height));
        (x0, y0, x1 - x0, y1 - y0)
    }

    /// Merges overlapping rectangles until none overlap; `members[i]` lists which of the
    /// given rectangles ended up in the `i`th one.
    pub fn merge(rects: Vec<Cells>) -> (Vec<Cells>, Vec<Vec<usize>>) {
        let mut out: Vec<(Cells, Vec<usize>)> = Vec::new();
        for (i, r) in rects.into_iter().enumerate() {
            let mut cur = (r, vec![i]);
            // A grown rectangle may now overlap ones it did not before: repeat until stable.
            while let Some(j) = out.iter().position(|(o, _)| o.overlaps(&cur.0)) {
                let (o, m) = out.swap_remove(j);
                cur.0 = cur.0.union(&o);
                cur.1.extend(m);
            }
            out.push(cur);
        }
        out.into_iter()
            .map(|(c, mut m)| {
                m.sort_unstable();
                (c, m)
            })
            .unzip()
    }
}

/// An RGBA picture (opaque) as the JPEG encoder of posters writes it.
pub fn encode_full(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, RenderError> {
    let grid = Grid::new(width, height);
    encode(rgba, width, height, grid.k)
}

fn encode(rgba: &[u8], width: u32, height: u32, k: u32) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::with_capacity((width * height / 4) as usize);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, QUALITY);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    enc.set_optimized_huffman_tables(false);
    enc.set_restart_interval(k as u16);
    enc.encode(rgba, width as u16, height as u16, jpeg_encoder::ColorType::Rgba)
        .map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(out)
}

/// Where the headers end (after the start-of-scan segment) and where each restart interval's
/// entropy-coded bytes are (without their RST marker), in a JPEG written by `encode`.
fn split(jpeg: &[u8]) -> Option<(usize, Vec<(usize, usize)>)> {
    let mut pos = 2;
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let header_end = loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(pos + 1)?;
        let len = u16::from_be_bytes([*jpeg.get(pos + 2)?, *jpeg.get(pos + 3)?]) as usize;
        pos += 2 + len;
        if marker == 0xDA {
            break pos;
        }
    };
    let mut segments = Vec::new();
    let (mut start, mut i) = (header_end, header_end);
    while i + 1 < jpeg.len() {
        if jpeg[i] != 0xFF {
            i += 1;
            continue;
        }
        match jpeg[i + 1] {
            // A stuffed 0xFF in the data.
            0x00 => i += 2,
            0xD0..=0xD7 => {
                segments.push((start, i));
                i += 2;
                start = i;
            }
            0xD9 => {
                segments.push((start, i));
                return Some((header_end, segments));
            }
            _ => return None,
        }
    }
    None
}

/// The static layer's JPEG, cell by cell.
pub struct Rows {
    grid: Grid,
    header: Vec<u8>,
    data: Vec<u8>,
    /// Each cell's bytes in `data`, in raster order.
    cells: Vec<(u32, u32)>,
}

/// A rectangle of cells drawn again for one poster: its pixels (RGBA, opaque, the rectangle's
/// width and height as given by `Grid::pixels`).
pub struct Patch {
    pub cells: Cells,
    pub pixmap: tiny_skia::Pixmap,
}

impl Rows {
    /// Encodes the static layer (RGBA, opaque) and keeps it cell by cell.
    pub fn new(rgba: &[u8], width: u32, height: u32) -> Result<Rows, RenderError> {
        let grid = Grid::new(width, height);
        let jpeg = encode(rgba, width, height, grid.k)?;
        let bad = || RenderError::Encode("unexpected JPEG layout".into());
        let (header_end, segs) = split(&jpeg).ok_or_else(bad)?;
        if segs.len() != (grid.cols * grid.rows) as usize {
            return Err(bad());
        }
        let mut data = Vec::with_capacity(jpeg.len() - header_end);
        let mut cells = Vec::with_capacity(segs.len());
        for (s, e) in segs {
            let at = data.len() as u32;
            data.extend_from_slice(&jpeg[s..e]);
            cells.push((at, data.len() as u32));
        }
        Ok(Rows { grid, header: jpeg[..header_end].to_vec(), data, cells })
    }

    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Bytes kept (for the cache's budget).
    pub fn bytes(&self) -> usize {
        self.header.len() + self.data.len() + self.cells.len() * 8 + std::mem::size_of::<Rows>()
    }

    /// The poster: the patches encoded, the other cells copied, the RST markers numbered again.
    /// Patches must not overlap and must have the sizes of their cells.
    pub fn splice(&self, patches: &[Patch]) -> Result<Vec<u8>, RenderError> {
        let g = self.grid;
        let bad = || RenderError::Encode("a patch could not be spliced".into());
        // Per cell: which patch's JPEG holds it, and where.
        let mut from: Vec<Option<(usize, usize, usize)>> = vec![None; self.cells.len()];
        let mut encoded = Vec::with_capacity(patches.len());
        for (p, patch) in patches.iter().enumerate() {
            let (_, _, w, h) = g.pixels(&patch.cells);
            if (patch.pixmap.width(), patch.pixmap.height()) != (w, h) {
                return Err(bad());
            }
            let jpeg = encode(patch.pixmap.data(), w, h, g.k)?;
            let (_, segs) = split(&jpeg).ok_or_else(bad)?;
            let pc = patch.cells.col1 - patch.cells.col0;
            if segs.len() != (pc * (patch.cells.row1 - patch.cells.row0)) as usize {
                return Err(bad());
            }
            for (i, (s, e)) in segs.into_iter().enumerate() {
                let (row, col) = (patch.cells.row0 + i as u32 / pc, patch.cells.col0 + i as u32 % pc);
                from[(row * g.cols + col) as usize] = Some((p, s, e));
            }
            encoded.push(jpeg);
        }
        let patched: usize = encoded.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(self.header.len() + self.data.len() + patched + self.cells.len() * 2 + 2);
        out.extend_from_slice(&self.header);
        let last = self.cells.len() - 1;
        for (i, &(s, e)) in self.cells.iter().enumerate() {
            match from[i] {
                Some((p, ps, pe)) => out.extend_from_slice(&encoded[p][ps..pe]),
                None => out.extend_from_slice(&self.data[s as usize..e as usize]),
            }
            if i != last {
                out.extend_from_slice(&[0xFF, 0xD0 + (i % 8) as u8]);
            }
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            for x in 0..w {
                let n = (x * 7 + y * 13 + seed).wrapping_mul(2_654_435_761) >> 24;
                v.extend_from_slice(&[(x / 5) as u8 ^ n as u8, (y / 7) as u8, (n / 2) as u8, 255]);
            }
        }
        v
    }

    #[test]
    fn the_grid_divides_rows_into_whole_intervals_and_covers_rectangles() {
        let g = Grid::new(1080, 1920);
        assert_eq!((g.k, g.cols, g.rows), (4, 17, 120));
        let g1 = Grid::new(1072, 100); // 67 MCUs, a prime
        assert_eq!((g1.k, g1.cols, g1.rows), (1, 67, 7));
        assert_eq!(g.cover(80, 120, 280, 320), Some(Cells { col0: 1, col1: 5, row0: 7, row1: 20 }));
        assert_eq!(g.cover(-50, -50, 0, 10), None);
        assert_eq!(g.cover(1070, 1910, 2000, 3000), Some(Cells { col0: 16, col1: 17, row0: 119, row1: 120 }));
        assert_eq!(g.pixels(&Cells { col0: 16, col1: 17, row0: 119, row1: 120 }), (1024, 1904, 56, 16));
        let (merged, members) = Grid::merge(vec![
            Cells { col0: 0, col1: 2, row0: 0, row1: 2 },
            Cells { col0: 5, col1: 6, row0: 0, row1: 1 },
            Cells { col0: 1, col1: 6, row0: 1, row1: 3 },
            Cells { col0: 0, col1: 1, row0: 9, row1: 10 },
        ]);
        assert_eq!(merged.len(), 2);
        assert!(merged.contains(&Cells { col0: 0, col1: 6, row0: 0, row1: 3 }));
        assert!(members.contains(&vec![0, 1, 2]) && members.contains(&vec![3]));
    }

    #[test]
    fn spliced_cells_are_the_bytes_of_a_full_encode() {
        // Odd sizes: the last column and row of cells are cut by the canvas edge.
        let (w, h) = (200, 90);
        let base = picture(w, h, 0);
        let rows = Rows::new(&base, w, h).unwrap();
        let g = rows.grid();
        let mut poster = base.clone();
        let mut patches = Vec::new();
        for cells in [
            Cells { col0: 0, col1: 1, row0: 0, row1: 2 },
            Cells { col0: g.cols - 1, col1: g.cols, row0: 3, row1: g.rows },
        ] {
            let (x0, y0, pw, ph) = g.pixels(&cells);
            let mut pix = tiny_skia::Pixmap::new(pw, ph).unwrap();
            let other = picture(pw, ph, 99);
            pix.data_mut().copy_from_slice(&other);
            for y in 0..ph {
                let at = (((y0 + y) * w + x0) * 4) as usize;
                poster[at..at + (pw * 4) as usize]
                    .copy_from_slice(&other[(y * pw * 4) as usize..((y + 1) * pw * 4) as usize]);
            }
            patches.push(Patch { cells, pixmap: pix });
        }
        let spliced = rows.splice(&patches).unwrap();
        assert_eq!(spliced, encode_full(&poster, w, h).unwrap());
        assert_eq!(rows.splice(&[]).unwrap(), encode_full(&base, w, h).unwrap());
        let img = image::load_from_memory_with_format(&spliced, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
    }
}
