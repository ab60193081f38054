//! Embeddings stay as the file encodes them and are decoded a row at a time, never held as an f32 matrix: rows
//! decoded that way (through the file for lookups, through the mapping for the int8 head) equal the whole tensor
//! decoded at once by the gguf-py-exact codecs, for each embedding type the converters write, and a default load
//! keeps the table encoded under the int8 head.

use std::sync::Arc;

use crate::common::*;
use bitnet_burn::io::convert::{convert_checkpoint, ConvertOptions};
use bitnet_burn::nn::{Embedding, RowTable};
use bitnet_burn::{load, HeadMode};
use bitnet_gguf::{GgmlType, GgufFile};
use burn::backend::NdArray;

#[test]
fn embedding_rows_decode_like_the_whole_tensor() {
    let Some(dir) = fixtures_or_skip("embedding_rows_decode_like_the_whole_tensor") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Q6_K (llama-quantize's default for the embedding) and F16 from the fixtures; BF16, F32, Q8_0 converted.
    let mut files = vec![
        (fixture_gguf(&dir, "tq2_0"), GgmlType::Q6K),
        (fixture_gguf(&dir, "tq2_0-f16emb"), GgmlType::F16),
    ];
    for embedding in [GgmlType::BF16, GgmlType::F32, GgmlType::Q8_0] {
        let out = tmp.path().join(format!("{embedding}.gguf"));
        let options = ConvertOptions {
            linear: GgmlType::TQ2_0,
            embedding,
        };
        convert_checkpoint(&dir.join("bitnet-tiny-h256/hf"), &out, options, |_, _| {}).unwrap();
        files.push((out, embedding));
    }
    for (path, ty) in files {
        let file = Arc::new(GgufFile::open(&path).unwrap());
        let info = file.tensor("token_embd.weight").unwrap().clone();
        assert_eq!(info.ty, ty, "{}", path.display());
        let whole = file.dequantize(&info).unwrap();
        let table = RowTable::mapped(file.clone(), info).unwrap();
        let (rows, cols) = (table.rows(), table.cols());
        let ids = [0, 1, rows / 2, rows - 1, 7, 7].map(|i| i as u32);
        let got = table.gather(&ids).unwrap();
        for (row, &id) in got.chunks_exact(cols).zip(&ids) {
            let id = id as usize;
            assert!(row == &whole[id * cols..(id + 1) * cols], "{ty}: row {id}");
        }
        let mut all = vec![0f32; rows * cols];
        table.decode_rows(0, &mut all);
        assert!(all == whole, "{ty}: every row");

        let model = load::<NdArray>(&path, &Default::default()).unwrap();
        assert_eq!(model.head_mode(), HeadMode::Int8, "{ty}: the default head");
        match &model.model.embedding {
            Embedding::Encoded(e) => assert_eq!(e.table.ty(), ty),
            Embedding::Float(_) => panic!("{ty}: the embedding was expanded to f32"),
        }
    }
}

#[test]
fn a_type_whose_blocks_span_rows_is_refused_as_a_table() {
    let Some(dir) = fixtures_or_skip("a_type_whose_blocks_span_rows_is_refused_as_a_table") else {
        return;
    };
    let file = Arc::new(GgufFile::open(fixture_gguf(&dir, "i2_s")).unwrap());
    let info = file.tensor("blk.0.attn_q.weight").unwrap().clone();
    let err = RowTable::mapped(file, info).unwrap_err().to_string();
    assert!(
        err.contains("blk.0.attn_q.weight") && err.contains("I2_S"),
        "{err}"
    );
}
