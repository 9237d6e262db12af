//! Posters: templates (admin pages and API), the renderer (QR codes read back, Chinese line
//! breaking, line clamp, emoji), public links (ETag, revocation) and missing fonts.

use std::collections::BTreeMap;

use shoal::poster::template::{Align, Element, Layout, Rgba, TextStyle};
use shoal::poster::{Format, PosterData, Posters, PostersConfig};

fn engine() -> Posters {
    Posters::new(&PostersConfig::default())
}

fn sample_data() -> PosterData {
    PosterData {
        name: "阿明🐟".into(),
        avatar: None,
        qr_url: "https://shoal.example/l/spring?r=AB12CD".into(),
        vars: BTreeMap::from([
            ("campaign".to_string(), "春季打卡营".to_string()),
            ("streak".to_string(), "27".to_string()),
            ("days".to_string(), "88".to_string()),
            ("date".to_string(), "2026-12-03".to_string()),
        ]),
    }
}

fn render(p: &Posters, layout: &Layout, data: &PosterData, format: Format) -> image::RgbaImage {
    let base = p.build_static_layer(None, layout, None).expect("static layer");
    let bytes = p.draw(&base, layout, data, format).expect("draw");
    image::load_from_memory(&bytes).expect("decodes").to_rgba8()
}

#[test]
fn the_sample_poster_renders() {
    let p = engine();
    let img = render(&p, &Layout::sample(), &sample_data(), Format::Png);
    img.save("/tmp/poster-sample.png").unwrap();
    assert_eq!(img.dimensions(), (1080, 1920));
}
