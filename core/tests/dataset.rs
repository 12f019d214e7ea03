//! Reading interaction logs: formats, errors with file/line/field, cleaning,
//! and the published facts of the MovieLens files when they are present.

use std::path::{Path, PathBuf};
use vitrine_core::dataset::{
    Cleaning, CsvOptions, Duplicates, Format, clean, read, read_from, split_csv_line,
};

fn parse(text: &str, format: &Format) -> Result<vitrine_core::dataset::Interactions, String> {
    read_from(Path::new("input.txt"), text.as_bytes(), format).map_err(|e| e.to_string())
}

#[test]
fn movielens_tab_and_double_colon() {
    let tab = parse(
        "1\t10\t4\t100\n2\t10\t3.5\t101\n1\t11\t5\t102\n",
        &Format::MovieLens,
    )
    .unwrap();
    assert_eq!((tab.len(), tab.n_users(), tab.n_items()), (3, 2, 2));
    assert_eq!(tab.ratings.as_ref().unwrap(), &vec![4.0, 3.5, 5.0]);
    assert_eq!(tab.timestamps.as_ref().unwrap(), &vec![100, 101, 102]);
    let colons = parse("1::10::4::100\r\n2::10::3::101\r\n", &Format::MovieLens).unwrap();
    assert_eq!((colons.len(), colons.user_ids[1].as_str()), (2, "2"));
}

#[test]
fn malformed_lines_name_file_line_and_field() {
    let cases = [
        (
            "1\t10\t4\t100\n2\t10\t4\n",
            "input.txt:2: expected 4 fields",
        ),
        (
            "1\t10\tfour\t100\n",
            "input.txt:1: field 3: rating \"four\" is not a number",
        ),
        (
            "1\t10\tNaN\t100\n",
            "input.txt:1: field 3: rating \"NaN\" is not a finite number",
        ),
        ("1\t10\tinf\t100\n", "is not a finite number"),
        ("1\t10\t4\tyesterday\n", "input.txt:1: field 4: timestamp"),
        ("\t10\t4\t100\n", "field 1 (user) is empty"),
        ("", "input.txt: no interactions"),
        ("\n\n", "no interactions"),
    ];
    for (text, expected) in cases {
        let err = parse(text, &Format::MovieLens).unwrap_err();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn csv_with_quotes_string_ids_and_custom_columns() {
    let options = CsvOptions {
        user_column: "shopper".into(),
        item_column: "sku".into(),
        rating_column: None,
        time_column: Some("ts".into()),
        delimiter: b',',
    };
    let text = "\u{feff}ts,sku,shopper,note\n1,\"SKU-1,XL\",alice,\"said \"\"hi\"\"\"\n2,SKU-2,bob,\n3,\"SKU-1,XL\",bob,x\n";
    let data = parse(text, &Format::Csv(options.clone())).unwrap();
    assert_eq!(data.item_ids, vec!["SKU-1,XL".to_string(), "SKU-2".into()]);
    assert_eq!(data.user_ids, vec!["alice".to_string(), "bob".into()]);
    assert!(data.ratings.is_none(), "no rating column: implicit");
    assert_eq!(data.rating(0), 1.0);

    let err = parse("ts,sku,user\n1,a,b\n", &Format::Csv(options.clone())).unwrap_err();
    assert!(
        err.contains("no column \"shopper\"") && err.contains("ts, sku, user"),
        "{err}"
    );
    let err = parse("ts,sku,shopper,note\n1,a\n", &Format::Csv(options.clone())).unwrap_err();
    assert!(
        err.contains("input.txt:2: 2 fields, but the header has 4"),
        "{err}"
    );
    let err = parse(
        "ts,sku,shopper,note\nnow,a,b,c\n",
        &Format::Csv(options.clone()),
    )
    .unwrap_err();
    assert!(
        err.contains("input.txt:2: field 1 (ts): timestamp"),
        "{err}"
    );
    let err = parse(
        "ts,sku,shopper,note\n1,\"open,b,c,d\n",
        &Format::Csv(options),
    )
    .unwrap_err();
    assert!(
        err.contains("input.txt:2: a quoted field is not closed"),
        "{err}"
    );
    let err = parse("", &Format::Csv(CsvOptions::default())).unwrap_err();
    assert!(err.contains("no header row"), "{err}");
    let err = parse(
        "user,item,rating,timestamp\nu,i,NaN,1\n",
        &Format::Csv(CsvOptions::default()),
    )
    .unwrap_err();
    assert!(
        err.contains("field 3 (rating): rating \"NaN\" is not a finite number"),
        "{err}"
    );
}

#[test]
fn csv_line_splitting() {
    assert_eq!(
        split_csv_line("a,\"b,c\",,\"\"\"q\"\"\"", b',').unwrap(),
        vec!["a", "b,c", "", "\"q\""]
    );
    assert_eq!(split_csv_line("a;b", b';').unwrap(), vec!["a", "b"]);
    assert!(split_csv_line("\"a\"b", b',').is_err());
}

#[test]
fn cleaning_duplicates_thresholds_windows_and_cores() {
    // u1 rates i1 twice (last wins: 2; sum: 7), u2 has one interaction.
    let text = "u1\ti1\t5\t10\nu1\ti2\t4\t11\nu1\ti1\t2\t12\nu2\ti2\t1\t13\n";
    let data = parse(text, &Format::MovieLens).unwrap();

    let last = clean(
        &data,
        &Cleaning {
            duplicates: Duplicates::LastWins,
            ..Cleaning::default()
        },
    )
    .unwrap();
    assert_eq!(last.len(), 3);
    assert_eq!(
        last.rating(
            last.items
                .iter()
                .position(|&i| last.item_ids[i as usize] == "i1")
                .unwrap()
        ),
        2.0
    );

    let sum = clean(
        &data,
        &Cleaning {
            duplicates: Duplicates::Sum,
            ..Cleaning::default()
        },
    )
    .unwrap();
    assert_eq!(
        sum.rating(
            sum.items
                .iter()
                .position(|&i| sum.item_ids[i as usize] == "i1")
                .unwrap()
        ),
        7.0
    );

    let liked = clean(
        &data,
        &Cleaning {
            min_rating: Some(4.0),
            ..Cleaning::default()
        },
    )
    .unwrap();
    assert_eq!(
        (liked.len(), liked.n_users()),
        (2, 1),
        "u2 drops out entirely"
    );

    let window = clean(
        &data,
        &Cleaning {
            time_window: (Some(11), Some(13)),
            ..Cleaning::default()
        },
    )
    .unwrap();
    assert_eq!(window.timestamps.as_ref().unwrap(), &vec![11, 12]);

    // 2-core: u2 has one interaction → dropped; then i2 keeps one (u1) → dropped;
    // then u1 keeps its two i1 rows, i1 has two → stable.
    let core = clean(
        &data,
        &Cleaning {
            min_user_interactions: 2,
            min_item_interactions: 2,
            ..Cleaning::default()
        },
    )
    .unwrap();
    assert_eq!((core.len(), core.n_users(), core.n_items()), (2, 1, 1));

    assert!(
        clean(
            &data,
            &Cleaning {
                min_user_interactions: 99,
                ..Cleaning::default()
            }
        )
        .is_err()
    );
    let mut untimed = data.clone();
    untimed.timestamps = None;
    assert!(
        clean(
            &untimed,
            &Cleaning {
                time_window: (Some(1), None),
                ..Cleaning::default()
            }
        )
        .is_err()
    );
}

fn shared_data(rel: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} not found (MovieLens files live in ../shared/data)",
            path.display()
        );
        None
    }
}

#[test]
fn movielens_100k_facts() {
    let Some(path) = shared_data("ml-100k/u.data") else {
        return;
    };
    let data = read(&path, &Format::MovieLens).unwrap();
    assert_eq!(
        (data.len(), data.n_users(), data.n_items()),
        (100_000, 943, 1_682)
    );
    let r = data.ratings.as_ref().unwrap();
    assert!(
        r.iter()
            .all(|&x| (1.0..=5.0).contains(&x) && x.fract() == 0.0)
    );
    assert!(data.rows_by_user().iter().all(|rows| rows.len() >= 20));
}

#[test]
fn movielens_1m_facts() {
    let Some(path) = shared_data("ml-1m/ratings.dat") else {
        return;
    };
    let data = read(&path, &Format::MovieLens).unwrap();
    assert_eq!(
        (data.len(), data.n_users(), data.n_items()),
        (1_000_209, 6_040, 3_706)
    );
    assert!(
        (data.mean_rating() - 3.5816).abs() < 5e-5,
        "mean {}",
        data.mean_rating()
    );
}
