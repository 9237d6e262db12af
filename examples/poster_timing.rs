//! Rough timings of an uncached poster while working on the renderer (not a benchmark: the lead's
//! `bench/posters.sh` is). Prints p50 / p99 of the whole-poster path (draw on a copy of the
//! static layer, encode all of it) and of the spliced path `Posters::draw` takes, plus the parts.
//!
//! `cargo run --release --example poster_timing -j 1 [iterations]`

use std::time::Instant;

use shoal::poster::{bench, render, Format, Posters, PostersConfig};

fn pct(v: &mut [u128], p: f64) -> f64 {
    v.sort_unstable();
    v[(((v.len() - 1) as f64) * p / 100.0).round() as usize] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let posters = Posters::new(&PostersConfig::default());
    let fonts = posters.fonts()?;
    let layout = bench::layout();
    let t = Instant::now();
    let base = posters.build_static_layer(Some((1, 1)), &layout, Some(&bench::background()))?;
    println!("static layer + its JPEG cells: {:.1} ms", t.elapsed().as_micros() as f64 / 1000.0);
    let rows = base.rows.as_ref().expect("cells");
    let avatar = bench::avatar();
    let data = |i: usize| bench::data(i, &avatar);
    for i in 0..3 {
        posters.draw(&base, &layout, &data(i), Format::Jpeg)?;
    }
    let (mut full, mut full_draw, mut full_enc) = (vec![], vec![], vec![]);
    let (mut spl, mut spl_draw, mut spl_enc) = (vec![], vec![], vec![]);
    let mut patch_px = 0;
    for i in 0..n {
        let d = data(1000 + i);
        let t0 = Instant::now();
        let pix = render::draw_member(&base.pixmap, &layout, &d, &fonts);
        let t1 = Instant::now();
        let a = render::encode(&pix, Format::Jpeg)?;
        let t2 = Instant::now();
        let patches = render::draw_patches(&base.pixmap, &layout, &d, &fonts, rows.grid());
        let t3 = Instant::now();
        let b = rows.splice(&patches)?;
        let t4 = Instant::now();
        assert_eq!(a, b, "spliced = full");
        patch_px = patches.iter().map(|p| p.pixmap.width() * p.pixmap.height()).sum::<u32>();
        full.push((t2 - t0).as_micros());
        full_draw.push((t1 - t0).as_micros());
        full_enc.push((t2 - t1).as_micros());
        spl.push((t4 - t2).as_micros());
        spl_draw.push((t3 - t2).as_micros());
        spl_enc.push((t4 - t3).as_micros());
    }
    let t = Instant::now();
    for _ in 0..n {
        let _ = image::load_from_memory(&avatar)?;
    }
    println!("avatar decode alone: {:.2} ms", t.elapsed().as_micros() as f64 / 1000.0 / n as f64);
    println!(
        "whole:   p50 {:.2} ms  p99 {:.2} ms  (draw p50 {:.2}, encode p50 {:.2})",
        pct(&mut full, 50.0),
        pct(&mut full, 99.0),
        pct(&mut full_draw, 50.0),
        pct(&mut full_enc, 50.0)
    );
    println!(
        "spliced: p50 {:.2} ms  p99 {:.2} ms  (draw p50 {:.2}, encode+splice p50 {:.2}); patches {} px of {}",
        pct(&mut spl, 50.0),
        pct(&mut spl, 99.0),
        pct(&mut spl_draw, 50.0),
        pct(&mut spl_enc, 50.0),
        patch_px,
        layout.width * layout.height
    );
    Ok(())
}
