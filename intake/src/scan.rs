//! Scanned PDFs: pages that are only a picture, with no text layer. The largest image of each
//! page is taken out and decoded under the image limits — a JPEG as it is (`DCTDecode`), or raw
//! samples (`FlateDecode` or none: 8-bit grey or RGB, 1-bit black and white) decompressed under a
//! bound — and given back as a grey PNG for OCR. What cannot be taken out this way (CCITT fax,
//! JBIG2, JPEG 2000, other colour spaces) leaves that page unread, never the file refused.

use std::io::Cursor;

use image::{GrayImage, ImageFormat, ImageReader, Limits};
use lopdf::Document;

use crate::image::ImagePolicy;

/// Smaller than this is a logo or a stamp, not a page.
const MIN_SIDE: i64 = 300;

/// The page images of `doc` (page number, grey PNG), in page order; pages without a usable picture
/// are left out.
pub fn page_images(doc: &Document, policy: &ImagePolicy) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    for (number, page) in doc.get_pages() {
        let Ok(images) = doc.get_page_images(page) else {
            continue;
        };
        let largest = images
            .iter()
            .filter(|i| i.width >= MIN_SIDE && i.height >= MIN_SIDE)
            .max_by_key(|i| i.width.saturating_mul(i.height));
        let Some(image) = largest else { continue };
        let Some(grey) = decode(doc, image, policy) else {
            continue;
        };
        let mut png = Vec::new();
        if grey
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .is_ok()
        {
            out.push((number, png));
        }
    }
    out
}

fn decode(
    doc: &Document,
    image: &lopdf::xobject::PdfImage<'_>,
    policy: &ImagePolicy,
) -> Option<GrayImage> {
    let width = u32::try_from(image.width).ok()?;
    let height = u32::try_from(image.height).ok()?;
    if width > policy.max_width || height > policy.max_height {
        return None;
    }
    let filters: Vec<&str> = image.filters.iter().flatten().map(String::as_str).collect();
    match filters.as_slice() {
        ["DCTDecode"] => {
            let mut reader =
                ImageReader::with_format(Cursor::new(image.content), ImageFormat::Jpeg);
            let mut limits = Limits::default();
            limits.max_image_width = Some(policy.max_width);
            limits.max_image_height = Some(policy.max_height);
            limits.max_alloc = Some(policy.max_alloc);
            reader.limits(limits);
            Some(reader.decode().ok()?.to_luma8())
        }
        [] | ["FlateDecode"] => {
            let components: u64 = match image.color_space.as_deref() {
                Some("DeviceGray") | Some("CalGray") => 1,
                Some("DeviceRGB") | Some("CalRGB") => 3,
                _ => return None,
            };
            let bits = image.bits_per_component.unwrap_or(8);
            let row = match bits {
                8 => u64::from(width) * components,
                1 if components == 1 => u64::from(width).div_ceil(8),
                _ => return None,
            };
            let size = usize::try_from(row * u64::from(height)).ok()?;
            if size as u64 > policy.max_alloc {
                return None;
            }
            let stream = doc.get_object(image.id).ok()?.as_stream().ok()?;
            let samples = match filters.as_slice() {
                [] => stream.content.clone(),
                _ => stream.decompressed_content_with_limit(size).ok()?,
            };
            if samples.len() < size {
                return None;
            }
            let row = usize::try_from(row).ok()?;
            let mut grey = GrayImage::new(width, height);
            for (y, line) in samples.chunks(row).take(height as usize).enumerate() {
                for x in 0..width as usize {
                    let value = match (bits, components) {
                        (1, _) => {
                            // 1 is white unless /Decode [1 0] says otherwise: the usual case is kept.
                            if line[x / 8] & (0x80 >> (x % 8)) != 0 {
                                255
                            } else {
                                0
                            }
                        }
                        (_, 1) => line[x],
                        _ => {
                            let p = &line[x * 3..x * 3 + 3];
                            ((u32::from(p[0]) * 299
                                + u32::from(p[1]) * 587
                                + u32::from(p[2]) * 114)
                                / 1000) as u8
                        }
                    };
                    grey.put_pixel(x as u32, y as u32, image::Luma([value]));
                }
            }
            Some(grey)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Object, Stream};

    /// A PDF of one page showing `image` (its stream dictionary and content) full page.
    fn scanned(dict: lopdf::Dictionary, content: Vec<u8>) -> Document {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let image = doc.add_object(Stream::new(dict, content));
        let draw = Content {
            operations: vec![
                Operation::new("q", vec![]),
                Operation::new(
                    "cm",
                    vec![
                        595.into(),
                        0.into(),
                        0.into(),
                        842.into(),
                        0.into(),
                        0.into(),
                    ],
                ),
                Operation::new("Do", vec!["Im0".into()]),
                Operation::new("Q", vec![]),
            ],
        };
        let contents = doc.add_object(Stream::new(
            dictionary! {},
            draw.encode().unwrap_or_default(),
        ));
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => contents,
            "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image } },
        });
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        doc
    }

    fn picture() -> GrayImage {
        GrayImage::from_fn(400, 500, |x, y| {
            image::Luma([if (x / 40 + y / 50) % 2 == 0 { 30 } else { 220 }])
        })
    }

    #[test]
    fn a_jpeg_page_and_a_raw_page_come_out_as_the_picture() {
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageLuma8(picture())
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap_or_default();
        let doc = scanned(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 400, "Height" => 500,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8, "Filter" => "DCTDecode",
            },
            jpeg,
        );
        let pages = page_images(&doc, &ImagePolicy::default());
        assert_eq!(pages.len(), 1);
        let back = image::load_from_memory(&pages[0].1)
            .map(|i| i.to_luma8())
            .ok();
        let back = back.unwrap_or_default();
        assert_eq!(back.dimensions(), (400, 500));
        assert!(back.get_pixel(10, 10)[0] < 80 && back.get_pixel(50, 10)[0] > 170);

        // The same picture as raw RGB samples, compressed.
        let rgb: Vec<u8> = picture()
            .pixels()
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect();
        let mut stream = Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 400, "Height" => 500,
                "ColorSpace" => "DeviceRGB", "BitsPerComponent" => 8,
            },
            rgb,
        );
        let _ = stream.compress();
        let doc = scanned(stream.dict.clone(), stream.content.clone());
        let pages = page_images(&doc, &ImagePolicy::default());
        let back = image::load_from_memory(&pages[0].1)
            .map(|i| i.to_luma8())
            .ok()
            .unwrap_or_default();
        assert_eq!(back.as_raw(), picture().as_raw());
    }

    #[test]
    fn a_picture_that_cannot_be_taken_out_leaves_the_page_unread() {
        // Samples that promise more than they hold, and a fax-coded page.
        let short = scanned(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 400, "Height" => 500,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            },
            vec![0u8; 1000],
        );
        assert!(page_images(&short, &ImagePolicy::default()).is_empty());
        let fax = scanned(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => 400, "Height" => 500,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 1, "Filter" => "CCITTFaxDecode",
            },
            vec![0u8; 1000],
        );
        assert!(page_images(&fax, &ImagePolicy::default()).is_empty());
    }
}
