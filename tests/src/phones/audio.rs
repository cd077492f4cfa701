//! Audio checks for the softphone interop suite: a tone written to a WAV file that a phone plays
//! as its microphone, and how many seconds of a given tone a phone decoded (its received audio
//! dumped to a WAV file). Each phone plays its own frequency, so a recording holding the peer's
//! tone proves media flowed end to end through the relay in that direction — counters alone
//! would also count packets the far end could not decode or that came from the wrong peer.

use std::path::Path;

/// Length of one analysis window.
const WINDOW_S: f64 = 0.1;
/// A window counts when this share of its energy sits at the tone's frequency (a pure sine gives
/// about 1.0; G.711 noise and silence stay far below).
const DOMINANCE: f64 = 0.5;
/// Windows quieter than this mean square (16-bit samples) are silence, whatever their spectrum.
const MIN_POWER: f64 = 1.0e4;

/// Writes a mono 16-bit PCM WAV with a sine of `hz` for `seconds` at `rate` Hz (amplitude about
/// -6 dBFS, so G.711 carries it without clipping).
pub fn write_tone_wav(path: &Path, hz: f64, seconds: f64, rate: u32) -> Result<(), String> {
    let n = (seconds * f64::from(rate)).round() as usize;
    let mut pcm = Vec::with_capacity(n * 2);
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let s = (16_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16;
        pcm.extend_from_slice(&s.to_le_bytes());
    }
    let mut out = Vec::with_capacity(44 + pcm.len());
    let data_len = u32::try_from(pcm.len()).map_err(|_| "tone too long".to_string())?;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&pcm);
    std::fs::write(path, out).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A decoded WAV: mono samples (channels averaged) and the sample rate.
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<f64>,
}

/// Reads a 16-bit PCM WAV (any rate, any channel count). A recorder killed mid-call may leave
/// a zero or too-large data length: the data then runs to the end of the file.
pub fn read_wav(path: &Path) -> Result<Pcm, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let bad = |why: &str| format!("{}: {why}", path.display());
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let f = bytes
                .get(body..body + 16)
                .ok_or_else(|| bad("short fmt chunk"))?;
            let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
            let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
            fmt = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
        } else if id == b"data" {
            let (format, channels, rate, bits) = fmt.ok_or_else(|| bad("data before fmt"))?;
            // 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which recorders use for plain PCM too.
            if !(format == 1 || format == 0xFFFE) || bits != 16 || channels == 0 {
                return Err(bad(&format!(
                    "not 16-bit PCM (format {format}, {bits} bits, {channels} channels)"
                )));
            }
            let end = if len == 0 || body + len > bytes.len() {
                bytes.len()
            } else {
                body + len
            };
            let ch = usize::from(channels);
            let samples = bytes[body..end]
                .chunks_exact(2 * ch)
                .map(|frame| {
                    let sum: f64 = frame
                        .chunks_exact(2)
                        .map(|s| f64::from(i16::from_le_bytes([s[0], s[1]])))
                        .sum();
                    sum / ch as f64
                })
                .collect();
            return Ok(Pcm { rate, samples });
        }
        pos = body + len + (len & 1);
    }
    Err(bad("no data chunk"))
}

/// Share of a window's energy at frequency `hz` (Goertzel), 0..≈1, and its mean square.
fn tone_share(window: &[f64], rate: u32, hz: f64) -> (f64, f64) {
    let n = window.len() as f64;
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in window {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power_at = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let energy: f64 = window.iter().map(|x| x * x).sum();
    if energy == 0.0 {
        return (0.0, 0.0);
    }
    // A sine of amplitude A over n samples gives power_at ≈ (A·n/2)² and energy ≈ A²·n/2.
    (2.0 * power_at / (n * energy), energy / n)
}

/// Seconds of audio in a 16-bit PCM WAV in which the tone `hz` dominates (100 ms windows).
pub fn tone_seconds(path: &Path, hz: f64) -> Result<f64, String> {
    let pcm = read_wav(path)?;
    Ok(tone_seconds_in(&pcm, hz))
}

/// [`tone_seconds`] on decoded samples.
pub fn tone_seconds_in(pcm: &Pcm, hz: f64) -> f64 {
    let len = ((f64::from(pcm.rate) * WINDOW_S) as usize).max(1);
    let hits = pcm
        .samples
        .chunks_exact(len)
        .filter(|w| {
            let (share, power) = tone_share(w, pcm.rate, hz);
            share >= DOMINANCE && power >= MIN_POWER
        })
        .count();
    hits as f64 * WINDOW_S
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("audio-{}-{name}.wav", std::process::id()))
    }

    #[test]
    fn finds_its_own_tone_and_not_another() {
        let p = tmp("tone");
        write_tone_wav(&p, 440.0, 2.0, 8000).unwrap();
        let hit = tone_seconds(&p, 440.0).unwrap();
        assert!((hit - 2.0).abs() < 0.15, "440 Hz found for {hit} s of 2 s");
        assert_eq!(tone_seconds(&p, 1000.0).unwrap(), 0.0);
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn silence_and_noise_are_not_a_tone() {
        let mut x: u32 = 1;
        let noise: Vec<f64> = (0..16_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                f64::from((x % 20_000) as i32 - 10_000)
            })
            .collect();
        let pcm = Pcm {
            rate: 8000,
            samples: noise,
        };
        assert_eq!(tone_seconds_in(&pcm, 440.0), 0.0);
        let quiet = Pcm {
            rate: 8000,
            samples: vec![0.0; 8000],
        };
        assert_eq!(tone_seconds_in(&quiet, 440.0), 0.0);
    }

    #[test]
    fn reads_stereo_at_another_rate() {
        // Stereo 16 kHz WAV with the same tone on both channels, data length left at 0 (as a
        // recorder killed mid-call leaves it).
        let rate = 16_000u32;
        let mut pcm = Vec::new();
        for i in 0..rate {
            let s = (12_000.0
                * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / f64::from(rate)).sin())
                as i16;
            pcm.extend_from_slice(&s.to_le_bytes());
            pcm.extend_from_slice(&s.to_le_bytes());
        }
        let mut f = Vec::new();
        f.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        f.extend_from_slice(&16u32.to_le_bytes());
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * 4).to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&16u16.to_le_bytes());
        f.extend_from_slice(b"data\0\0\0\0");
        f.extend_from_slice(&pcm);
        let p = tmp("stereo");
        std::fs::write(&p, f).unwrap();
        let hit = tone_seconds(&p, 1000.0).unwrap();
        assert!((hit - 1.0).abs() < 0.15, "1 kHz found for {hit} s of 1 s");
        let _ = std::fs::remove_file(p);
    }
}
