//! S3 bucket backups against moto (S3 with versioning): incremental server-side backups, bucket
//! and object restores, prune (mark and sweep), and faults on copies and listings.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use backstop::bucket::backup::{self, BackupOutcome};
use backstop::bucket::{lock, prune, restore, Store};
use backstop::catalog::Catalog;
use backstop::event::ScheduleSlot;
use backstop::settings::{self, BucketSettings};
use backstop_testkit::fault_proxy::{Chaos, Fault, FaultProxy};
use backstop_tests::{backstop_cmd, cli_binary, Harness};

const MIB: usize = 1024 * 1024;

/// What the test wrote to a key: bytes, metadata, tags, content type.
#[derive(Debug, Clone, PartialEq)]
struct Written {
    hash: String,
    size: usize,
    metadata: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    content_type: String,
}

fn content(key: &str, round: u32, size: usize) -> Vec<u8> {
    let seed = format!("{key}#{round}|");
    seed.bytes().cycle().take(size).collect()
}

async fn make_bucket(h: &Harness, name: &str, versioned: bool) {
    h.clients
        .s3
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    if versioned {
        h.clients
            .s3
            .put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

async fn put(
    h: &Harness,
    bucket: &str,
    key: &str,
    round: u32,
    size: usize,
    model: &mut BTreeMap<String, Written>,
) {
    let body = content(key, round, size);
    let metadata = BTreeMap::from([
        ("owner".to_owned(), format!("team {}", round)),
        ("source-key".to_owned(), "kept".to_owned()),
    ]);
    let tags = BTreeMap::from([
        ("class".to_owned(), "invoice".to_owned()),
        ("round".to_owned(), round.to_string()),
    ]);
    let content_type = if key.ends_with(".json") {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    h.clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .content_type(content_type)
        .set_metadata(Some(metadata.clone().into_iter().collect()))
        .tagging(backstop::bucket::s3::tagging_header(&tags))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    model.insert(
        key.to_owned(),
        Written {
            hash: blake3::hash(&body).to_hex().to_string(),
            size,
            metadata,
            tags,
            content_type: content_type.to_owned(),
        },
    );
}

/// Every object of `bucket` as a person would check it: bytes (by hash), metadata, tags.
async fn read_bucket(h: &Harness, bucket: &str) -> BTreeMap<String, Written> {
    let s3 = &h.clients.s3;
    let mut out = BTreeMap::new();
    let keys = backstop::export::s3io::list(s3, bucket, "").await.unwrap();
    for (key, _) in keys {
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let metadata: BTreeMap<String, String> = got
            .metadata()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let content_type = got.content_type().unwrap_or_default().to_owned();
        let bytes = got.body.collect().await.unwrap().into_bytes();
        let tags = s3
            .get_object_tagging()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        out.insert(
            key,
            Written {
                hash: blake3::hash(&bytes).to_hex().to_string(),
                size: bytes.len(),
                metadata,
                tags,
                content_type,
            },
        );
    }
    out
}

struct Setup {
    h: Harness,
    source: String,
    backups: String,
    settings: BucketSettings,
    catalog: Catalog,
}

impl Setup {
    async fn new(extra: &[(&str, &str)]) -> Setup {
        let h = Harness::new().await;
        let source = h.name("attachments");
        let backups = h.name("bucket-backups");
        make_bucket(&h, &source, true).await;
        make_bucket(&h, &backups, true).await;
        let mut env: Vec<(&str, &str)> = vec![
            (settings::ENV_BUCKETS, &source),
            (settings::ENV_BUCKET_BACKUP_BUCKET, &backups),
            (settings::ENV_BUCKET_MULTIPART_THRESHOLD, "5242880"),
            (settings::ENV_BUCKET_PART_SIZE, "5242880"),
            (settings::ENV_BUCKET_PAGE_SIZE, "40"),
            // These tests back up named slots of the past week, in order; the refusal of
            // backfill has its own test with the default window.
            (settings::ENV_BACKFILL_WINDOW, "3650d"),
        ];
        env.extend_from_slice(extra);
        let settings = BucketSettings::resolve(&h.env(&env)).unwrap();
        let catalog = Catalog::new((*h.clients.dynamodb).clone(), h.stack.catalog_table.clone());
        Setup {
            source,
            backups,
            settings,
            catalog,
            h,
        }
    }

    fn store(&self) -> Store {
        self.settings.store()
    }

    async fn backup(&self, slot: &ScheduleSlot) -> BackupOutcome {
        backup::backup(
            &self.h.clients.s3,
            &self.catalog,
            &self.store(),
            &self.source,
            slot,
            &self.settings.options,
            None,
            None,
        )
        .await
        .unwrap()
    }

    async fn stored_objects(&self) -> usize {
        backstop::export::s3io::list(
            &self.h.clients.s3,
            &self.backups,
            &self.store().objects_prefix(&self.source),
        )
        .await
        .unwrap()
        .len()
    }
}

fn done(outcome: BackupOutcome) -> (backstop::bucket::Summary, bool) {
    match outcome {
        BackupOutcome::Done { summary, already } => (summary, already),
        other => panic!("not done: {other:?}"),
    }
}

fn slot(s: &str) -> ScheduleSlot {
    ScheduleSlot::parse(s).unwrap()
}

/// The keys of the acceptance bucket: a 0-byte object, spaces, unicode, nested prefixes.
fn keys(n: usize) -> Vec<String> {
    let mut keys: Vec<String> = (0..n)
        .map(|i| match i % 4 {
            0 => format!("invoices/2026/{i:04}.json"),
            1 => format!("attachments/with space {i}.txt"),
            2 => format!("unicode/ünïcödé-€-{i}.txt"),
            _ => format!("deep/a/b/c/{i}"),
        })
        .collect();
    keys.push("empty-object".into());
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_backs_up_incrementally_and_either_slot_restores_byte_identical() {
    let s = Setup::new(&[]).await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    let keys = keys(240);
    for (i, key) in keys.iter().enumerate() {
        let size = if key == "empty-object" {
            0
        } else {
            100 + i * 13
        };
        put(h, &s.source, key, 1, size, &mut model).await;
    }
    // One object above the multipart threshold (5 MiB here): copied in parts.
    put(h, &s.source, "big/video.bin", 1, 11 * MIB + 17, &mut model).await;
    let first_model = model.clone();

    let slot1 = slot("2026-12-01T02:00:00Z");
    let (sum1, already) = done(s.backup(&slot1).await);
    assert!(!already);
    assert_eq!(sum1.objects, first_model.len() as u64);
    assert_eq!(sum1.copied, first_model.len() as u64);
    assert_eq!(sum1.referenced, 0);
    assert!(sum1.parts >= 6, "pages of 40 make parts: {sum1:?}");
    assert_eq!(s.stored_objects().await, first_model.len());

    // 10 changed, 5 deleted, 3 added.
    let mut second_model = first_model.clone();
    for key in keys.iter().take(10) {
        put(h, &s.source, key, 2, 333, &mut second_model).await;
    }
    for key in keys.iter().skip(20).take(5) {
        h.clients
            .s3
            .delete_object()
            .bucket(&s.source)
            .key(key)
            .send()
            .await
            .unwrap();
        second_model.remove(key);
    }
    for i in 0..3 {
        put(
            h,
            &s.source,
            &format!("new/added {i}.txt"),
            2,
            50 + i,
            &mut second_model,
        )
        .await;
    }

    let slot2 = slot("2026-12-02T02:00:00Z");
    let (sum2, _) = done(s.backup(&slot2).await);
    assert_eq!(
        sum2.copied, 13,
        "exactly the new or changed objects: {sum2:?}"
    );
    assert_eq!(sum2.objects, second_model.len() as u64);
    assert_eq!(sum2.referenced, second_model.len() as u64 - 13);
    assert_eq!(s.stored_objects().await, first_model.len() + 13);

    // A redelivered slot does nothing again.
    let (again, already) = done(s.backup(&slot2).await);
    assert!(already);
    assert_eq!(again, sum2);
    assert_eq!(s.stored_objects().await, first_model.len() + 13);

    // Both slots restore into empty buckets with the same bytes, metadata and tags; slot 1
    // through the CLI.
    let target1 = h.name("restored-one");
    let target2 = h.name("restored-two");
    make_bucket(h, &target1, false).await;
    make_bucket(h, &target2, false).await;
    let env = [
        (settings::ENV_BUCKET_BACKUP_BUCKET, s.backups.clone()),
        (settings::ENV_BUCKET_MULTIPART_THRESHOLD, "5242880".into()),
        (settings::ENV_BUCKET_PART_SIZE, "5242880".into()),
    ];
    let cli = cli_binary();
    let out = backstop_cmd(&cli, h, &h.stack.endpoint, &env)
        .args([
            "restore",
            "bucket",
            "--bucket",
            &s.source,
            "--slot",
            "2026-12-01T02:00:00Z",
            "--to",
            &target1,
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("restored {} objects", first_model.len())),
        "{text}"
    );
    assert_eq!(read_bucket(h, &target1).await, first_model);

    let report = restore::restore_bucket(
        &h.clients.s3,
        &s.store(),
        &s.source,
        &slot2,
        &target2,
        None,
        false,
        false,
        &s.settings.copy_options(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.checked, second_model.len() as u64);
    assert_eq!(read_bucket(h, &target2).await, second_model);

    // Again into the same bucket: refused before any copy, the objects there untouched.
    let err = restore::restore_bucket(
        &h.clients.s3,
        &s.store(),
        &s.source,
        &slot1,
        &target2,
        None,
        false,
        false,
        &s.settings.copy_options(),
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already exist in bucket"), "{err}");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(read_bucket(h, &target2).await, second_model);

    // A prefix of a slot, with --overwrite, replaces only those objects.
    let report = restore::restore_bucket(
        &h.clients.s3,
        &s.store(),
        &s.source,
        &slot1,
        &target2,
        Some("invoices/"),
        true,
        false,
        &s.settings.copy_options(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert!(report.overwritten > 0);
    let after = read_bucket(h, &target2).await;
    for (k, w) in &after {
        let want = if k.starts_with("invoices/") && first_model.contains_key(k) {
            &first_model[k]
        } else {
            &second_model[k]
        };
        assert_eq!(w, want, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_object_makes_a_previous_version_current_and_keeps_every_version() {
    let s = Setup::new(&[]).await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    let key = "contracts/the deal ü.txt";
    put(h, &s.source, key, 1, 500, &mut model).await;
    let first = model[key].clone();
    let slot1 = slot("2026-12-01T02:00:00Z");
    done(s.backup(&slot1).await);
    put(h, &s.source, key, 2, 700, &mut model).await;

    let versions = |h: &Harness| {
        let s3 = (*h.clients.s3).clone();
        let bucket = s.source.clone();
        async move {
            s3.list_object_versions()
                .bucket(&bucket)
                .prefix(key)
                .send()
                .await
                .unwrap()
                .versions()
                .iter()
                .map(|v| (v.version_id().unwrap().to_owned(), v.is_latest().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let before = versions(h).await;
    assert_eq!(before.len(), 2);
    let oldest = before
        .iter()
        .find(|(_, latest)| !latest)
        .map(|(v, _)| v.clone())
        .unwrap();

    let cli = cli_binary();
    let env = [(settings::ENV_BUCKET_BACKUP_BUCKET, s.backups.clone())];
    let out = backstop_cmd(&cli, h, &h.stack.endpoint, &env)
        .args([
            "restore",
            "object",
            "--bucket",
            &s.source,
            "--key",
            key,
            "--version",
            &oldest,
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stays as a noncurrent version"), "{text}");
    let after = versions(h).await;
    assert_eq!(after.len(), 3, "every earlier version remains: {after:?}");
    for (v, _) in &before {
        assert!(after.iter().any(|(a, _)| a == v), "{v} kept");
    }
    let now = read_bucket(h, &s.source).await;
    assert_eq!(
        now[key], first,
        "the old version is current, with its metadata and tags"
    );

    // From the slot onto another key, into a bucket without versioning: refused over an
    // existing object unless --overwrite.
    let plain = h.name("plain");
    make_bucket(h, &plain, false).await;
    h.clients
        .s3
        .put_object()
        .bucket(&plain)
        .key("x")
        .body(ByteStream::from_static(b"there"))
        .send()
        .await
        .unwrap();
    let err = restore::restore_object(
        &h.clients.s3,
        Some(&s.store()),
        &plain,
        "x",
        &restore::ObjectSource::Version("nope".into()),
        None,
        false,
        false,
        &s.settings.copy_options(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("without a version id"), "{err}");
    let out = backstop_cmd(&cli, h, &h.stack.endpoint, &env)
        .args([
            "restore",
            "object",
            "--bucket",
            &s.source,
            "--key",
            key,
            "--slot",
            "2026-12-01T02:00:00Z",
            "--to",
            "copies/restored.txt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = read_bucket(h, &s.source).await;
    assert_eq!(now["copies/restored.txt"], first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_deletes_old_slots_and_sweeps_only_objects_no_kept_slot_references() {
    let s = Setup::new(&[(
        settings::ENV_BUCKET_RETENTION_POLICY,
        "keep_last=1,min_complete=1",
    )])
    .await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    for k in ["a", "b", "c"] {
        put(h, &s.source, k, 1, 10, &mut model).await;
    }
    done(s.backup(&slot("2026-12-01T02:00:00Z")).await);
    // b changes: its new version is copied in slot 2 and referenced (not copied) by slot 3.
    put(h, &s.source, "b", 2, 20, &mut model).await;
    done(s.backup(&slot("2026-12-02T02:00:00Z")).await);
    put(h, &s.source, "a", 3, 30, &mut model).await;
    h.clients
        .s3
        .delete_object()
        .bucket(&s.source)
        .key("c")
        .send()
        .await
        .unwrap();
    model.remove("c");
    let (sum3, _) = done(s.backup(&slot("2026-12-03T02:00:00Z")).await);
    assert_eq!((sum3.copied, sum3.referenced), (1, 1));
    assert_eq!(s.stored_objects().await, 5);

    let policy = s.settings.policy.compile().unwrap();
    // Slots carry the time of their data (each backup's listing, moments ago), never their
    // names' times: the plan is made for now.
    let now = jiff::Timestamp::now();
    let store = s.store();
    // While a backup holds the bucket's lock, nothing is pruned. The lock runs on the real
    // clock, whatever `now` the plan is made for (a lock taken "at 03:00 for 5 minutes" had
    // expired on any day after 2026-12-02, and the prune rightly went ahead).
    let clock = jiff::Timestamp::now();
    assert!(lock::acquire(
        &s.catalog,
        &s.source,
        "a-backup",
        "backup",
        clock,
        clock + jiff::SignedDuration::from_mins(5)
    )
    .await
    .unwrap()
    .is_none());
    let held = prune::prune(
        &h.clients.s3,
        &s.catalog,
        &store,
        &s.source,
        &policy,
        now,
        false,
        prune::Role::Original,
    )
    .await
    .unwrap();
    assert!(
        held.blocked
            .as_deref()
            .unwrap_or_default()
            .contains("locked by a-backup"),
        "{held:?}"
    );
    assert_eq!(s.stored_objects().await, 5);
    lock::release(&s.catalog, &s.source, "a-backup")
        .await
        .unwrap();

    let dry = prune::prune(
        &h.clients.s3,
        &s.catalog,
        &store,
        &s.source,
        &policy,
        now,
        true,
        prune::Role::Original,
    )
    .await
    .unwrap();
    assert_eq!(dry.deleted_slots.len(), 2, "{dry:?}");
    assert_eq!(dry.swept, 3);
    assert_eq!(s.stored_objects().await, 5, "a dry run deletes nothing");

    // A key under objects/ that is not a stored id (not Backstop's) is never swept.
    let foreign = format!("{}notes/README.txt", store.objects_prefix(&s.source));
    h.clients
        .s3
        .put_object()
        .bucket(&s.backups)
        .key(&foreign)
        .body(ByteStream::from_static(b"not a copy"))
        .send()
        .await
        .unwrap();
    let report = prune::prune(
        &h.clients.s3,
        &s.catalog,
        &store,
        &s.source,
        &policy,
        now,
        false,
        prune::Role::Original,
    )
    .await
    .unwrap();
    assert_eq!(
        report.deleted_slots,
        vec!["20261201T020000Z".to_owned(), "20261202T020000Z".to_owned()]
    );
    assert_eq!((report.referenced, report.swept), (2, 3));
    assert_eq!(
        s.stored_objects().await,
        3,
        "two copies and the foreign key"
    );
    assert!(
        backstop::bucket::s3::head(&h.clients.s3, &s.backups, &foreign)
            .await
            .unwrap()
            .is_some()
    );
    let slots = prune::list_slots(&h.clients.s3, &store, &s.source)
        .await
        .unwrap();
    assert_eq!(slots, vec![(slot("2026-12-03T02:00:00Z"), true)]);

    // b's copy, made for slot 2 and referenced by the kept slot 3, survived: slot 3 restores.
    let target = h.name("after-prune");
    make_bucket(h, &target, false).await;
    restore::restore_bucket(
        &h.clients.s3,
        &store,
        &s.source,
        &slot("2026-12-03T02:00:00Z"),
        &target,
        None,
        false,
        false,
        &s.settings.copy_options(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(read_bucket(h, &target).await, model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_on_copies_and_listings_end_complete_or_failed_never_with_a_manifest_naming_a_missing_copy(
) {
    let s = Setup::new(&[]).await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    for i in 0..60 {
        put(
            h,
            &s.source,
            &format!("doc-{i:03}.txt"),
            1,
            200 + i,
            &mut model,
        )
        .await;
    }
    put(h, &s.source, "big/one.bin", 1, 6 * MIB, &mut model).await;
    let proxy = FaultProxy::start(&h.stack.endpoint).await;
    let faulty = backstop_testkit::clients_through(&proxy).await;
    let store = s.store();
    let run = |slot: ScheduleSlot| {
        let s3 = faulty.s3.clone();
        let catalog = Catalog::new((*faulty.dynamodb).clone(), h.stack.catalog_table.clone());
        let store = store.clone();
        let source = s.source.clone();
        let options = s.settings.options.clone();
        async move { backup::backup(&s3, &catalog, &store, &source, &slot, &options, None, None).await }
    };

    // A copy that fails after S3 answered 200 (the error in the body), every time: the backup
    // fails naming the copy, and writes no summary.
    proxy.inject(Fault::new(
        "CopyObject",
        "doc-007.txt",
        200,
        "InternalError",
    ));
    let slot1 = slot("2026-12-01T02:00:00Z");
    let err = run(slot1).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("CopyObject"), "{text}");
    assert!(text.contains("doc-007.txt"), "{text}");
    assert!(
        backup::read_summary(&h.clients.s3, &store, &s.source, &slot1)
            .await
            .unwrap()
            .is_none()
    );
    assert!(proxy.injected() >= 1);
    let stored_before = s.stored_objects().await;
    assert!(stored_before < model.len(), "{stored_before}");

    // Throttling and 500s on listings, heads, tags and copies: the retries carry it through,
    // and the copies made before are reused, not made again.
    proxy.clear();
    proxy.chaos(Chaos {
        rate: 0.25,
        lost_share: 0.0,
        seed: 7,
        operations: vec![
            "CopyObject".into(),
            "UploadPartCopy".into(),
            "ListObjectVersions".into(),
            "HeadObject".into(),
            "GetObjectTagging".into(),
        ],
    });
    let outcome = run(slot1).await;
    let counts = proxy.counts();
    assert!(counts.faults > 10, "{counts:?}");
    let summary = match outcome {
        Ok(BackupOutcome::Done { summary, .. }) => summary,
        Ok(other) => panic!("{other:?}"),
        Err(e) => {
            // Failing is allowed, but only with a precise error and no summary.
            assert!(
                backup::read_summary(&h.clients.s3, &store, &s.source, &slot1)
                    .await
                    .unwrap()
                    .is_none()
            );
            panic!("with retries this seed completes; it failed with {e}");
        }
    };
    assert_eq!(summary.objects, model.len() as u64);
    assert_eq!(summary.copied as usize, model.len() - stored_before);

    // Every object the manifest names is stored, with its size.
    let (_, entries) = backup::read_manifest(&h.clients.s3, &store, &s.source, &slot1)
        .await
        .unwrap();
    let stored: HashMap<String, i64> =
        backstop::export::s3io::list(&h.clients.s3, &s.backups, &store.objects_prefix(&s.source))
            .await
            .unwrap()
            .into_iter()
            .map(|(k, size)| (k.rsplit('/').next().unwrap().to_owned(), size))
            .collect();
    for e in &entries {
        assert_eq!(stored.get(&e.stored), Some(&e.size), "{}", e.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_stopped_at_its_time_limit_goes_on_from_its_checkpoint() {
    let s = Setup::new(&[(settings::ENV_BUCKET_PAGE_SIZE, "10")]).await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    for i in 0..35 {
        put(h, &s.source, &format!("k{i:02}"), 1, 10 + i, &mut model).await;
    }
    let slot1 = slot("2026-12-01T02:00:00Z");
    let store = s.store();
    let mut calls = 0;
    let summary = loop {
        calls += 1;
        assert!(calls < 10, "it finishes");
        // A limit already past: one page per call, then a checkpoint.
        let outcome = backup::backup(
            &h.clients.s3,
            &s.catalog,
            &store,
            &s.source,
            &slot1,
            &s.settings.options,
            Some(jiff::Timestamp::now()),
            None,
        )
        .await
        .unwrap();
        match outcome {
            BackupOutcome::Continues { progress } => {
                assert_eq!(progress.parts, calls, "{progress:?}");
                assert!(
                    backup::read_summary(&h.clients.s3, &store, &s.source, &slot1)
                        .await
                        .unwrap()
                        .is_none(),
                    "no summary before the end"
                );
            }
            BackupOutcome::Done { summary, .. } => break summary,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(calls, 4, "35 objects in pages of 10");
    assert_eq!(
        (summary.objects, summary.copied, summary.parts),
        (35, 35, 4)
    );
    // The same bucket backed up in one go for another slot has the same manifest lines, so the
    // same fingerprint (the stored ids do not depend on the slot).
    let (straight, _) = done(s.backup(&slot("2026-12-02T02:00:00Z")).await);
    assert_eq!(straight.fingerprint, summary.fingerprint);
    assert_eq!((straight.copied, straight.referenced), (0, 35));
    let target = h.name("resumed");
    make_bucket(h, &target, false).await;
    restore::restore_bucket(
        &h.clients.s3,
        &store,
        &s.source,
        &slot1,
        &target,
        None,
        false,
        false,
        &s.settings.copy_options(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(read_bucket(h, &target).await, model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_in_another_region_matches_the_original_manifest_and_objects() {
    let s = Setup::new(&[]).await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    for i in 0..30 {
        put(h, &s.source, &format!("r/{i} ü"), 1, 100 + i, &mut model).await;
    }
    put(h, &s.source, "r/big.bin", 1, 6 * MIB, &mut model).await;
    let slot1 = slot("2026-12-01T02:00:00Z");
    let (sum, _) = done(s.backup(&slot1).await);

    // The replica bucket lives in us-west-2 on the same emulator.
    let west_config = h
        .config
        .clone()
        .into_builder()
        .region(aws_config::Region::new("us-west-2"))
        .build();
    let west = (*backstop::aws::Clients::from_config(&west_config).s3).clone();
    let replica = h.name("replica-west");
    west.create_bucket()
        .bucket(&replica)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();

    let env = [
        (settings::ENV_BUCKET_BACKUP_BUCKET, s.backups.clone()),
        (settings::ENV_REPLICA_BUCKET, replica.clone()),
        (settings::ENV_REPLICA_REGION, "us-west-2".to_owned()),
        (settings::ENV_BUCKET_MULTIPART_THRESHOLD, "5242880".into()),
        (settings::ENV_BUCKET_PART_SIZE, "5242880".into()),
    ];
    let cli = cli_binary();
    let replicate = || {
        let out = backstop_cmd(&cli, h, &h.stack.endpoint, &env)
            .args([
                "bucket",
                "replicate",
                "--bucket",
                &s.source,
                "--slot",
                "2026-12-01T02:00:00Z",
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    let text = replicate();
    assert!(
        text.contains(&format!("copied {} objects", model.len())),
        "{text}"
    );
    assert!(text.contains(&sum.fingerprint), "{text}");

    // The replica's manifest and every object it names match the original, byte for byte.
    let replica_store = Store::new(&replica, "buckets", None);
    let (rsum, rentries) = backup::read_manifest(&west, &replica_store, &s.source, &slot1)
        .await
        .unwrap();
    let (osum, oentries) = backup::read_manifest(&h.clients.s3, &s.store(), &s.source, &slot1)
        .await
        .unwrap();
    assert_eq!(rsum, osum);
    assert_eq!(rentries, oentries);
    for e in &oentries {
        let get = |s3: aws_sdk_s3::Client, bucket: String, key: String| async move {
            let b = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            blake3::hash(&b.body.collect().await.unwrap().into_bytes())
                .to_hex()
                .to_string()
        };
        let original = get(
            (*h.clients.s3).clone(),
            s.backups.clone(),
            s.store().object_key(&s.source, &e.stored),
        )
        .await;
        let copy = get(
            west.clone(),
            replica.clone(),
            replica_store.object_key(&s.source, &e.stored),
        )
        .await;
        assert_eq!(original, copy, "{}", e.key);
        assert_eq!(original, model[&e.key].hash, "{}", e.key);
    }

    // Again: already complete, nothing copied.
    let text = replicate();
    assert!(text.contains("was complete already"), "{text}");
    assert!(text.contains("copied 0 objects"), "{text}");
}

async fn tag_bucket(h: &Harness, bucket: &str, key: &str, value: &str) {
    h.clients
        .s3
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// A bucket job metric's sum over the last hour (dimensions Job=bucket, Bucket and, for replica
/// metrics, Replica), or `None` when nothing was published.
async fn bucket_metric(
    h: &Harness,
    metric: &str,
    bucket: &str,
    replica: Option<&str>,
    stat: aws_sdk_cloudwatch::types::Statistic,
) -> Option<f64> {
    let cw = aws_sdk_cloudwatch::Client::new(&h.config);
    let now = jiff::Timestamp::now().as_second();
    let dim = |n: &str, v: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(n)
            .value(v)
            .build()
    };
    let mut dims = vec![dim("Job", "bucket"), dim("Bucket", bucket)];
    dims.extend(replica.map(|r| dim("Replica", r)));
    let out = cw
        .get_metric_statistics()
        .namespace(h.namespace())
        .metric_name(metric)
        .set_dimensions(Some(dims))
        .start_time(aws_smithy_types::DateTime::from_secs(now - 3600))
        .end_time(aws_smithy_types::DateTime::from_secs(now + 60))
        .period(3600)
        .statistics(stat.clone())
        .send()
        .await
        .unwrap();
    let points = out.datapoints();
    if points.is_empty() {
        return None;
    }
    Some(
        points
            .iter()
            .filter_map(|p| match stat {
                aws_sdk_cloudwatch::types::Statistic::Maximum => p.maximum(),
                _ => p.sum(),
            })
            .fold(0.0, |a, b| {
                if matches!(stat, aws_sdk_cloudwatch::types::Statistic::Maximum) {
                    f64::max(a, b)
                } else {
                    a + b
                }
            }),
    )
}

fn target<'a>(
    r: &'a backstop::report::RunReport,
    bucket: &str,
) -> &'a backstop::report::TargetReport {
    r.targets
        .iter()
        .find(|t| t.table == bucket)
        .unwrap_or_else(|| panic!("no target {bucket}: {r:#?}"))
}

/// The scheduled bucket job end to end: tag selection (never the backup or replica bucket), a
/// backup that runs out of time and goes on from its checkpoint, the replica in another region
/// and its lag, the prune of both after the next slot, a redelivery that does nothing, a dry
/// run that writes nothing; and the report, the SNS message and the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bucket_job_backs_up_tagged_buckets_replicates_prunes_and_reports() {
    use aws_sdk_cloudwatch::types::Statistic;
    use backstop::report::{Outcome, RunStatus};
    use backstop::settings::JobKind;
    let h = Harness::new().await;
    let h = &h;
    let attachments = h.name("job-attachments");
    let invoices = h.name("job-invoices");
    let scratch = h.name("job-scratch");
    let backups = h.name("job-backups");
    for b in [&attachments, &invoices, &scratch, &backups] {
        make_bucket(h, b, true).await;
    }
    let plan = h.name("daily");
    for b in [&attachments, &invoices, &backups] {
        tag_bucket(h, b, "backup", &plan).await;
    }
    let west_config = h
        .config
        .clone()
        .into_builder()
        .region(aws_config::Region::new("us-west-2"))
        .build();
    let west = (*backstop::aws::Clients::from_config(&west_config).s3).clone();
    let replica = h.name("job-replica");
    west.create_bucket()
        .bucket(&replica)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut model = BTreeMap::new();
    for i in 0..25 {
        put(
            h,
            &attachments,
            &format!("a/{i}.txt"),
            1,
            100 + i,
            &mut model,
        )
        .await;
    }
    for i in 0..12 {
        put(
            h,
            &invoices,
            &format!("inv/{i}.json"),
            1,
            300 + i,
            &mut model,
        )
        .await;
    }
    put(h, &scratch, "tmp.txt", 1, 10, &mut model).await;

    let tag = format!("backup={plan}");
    let env = |extra: &[(&'static str, String)]| {
        let mut e: Vec<(&'static str, String)> = vec![
            (settings::ENV_BUCKET_TAG, tag.clone()),
            (settings::ENV_BUCKET_BACKUP_BUCKET, backups.clone()),
            (settings::ENV_REPLICA_BUCKET, replica.clone()),
            (settings::ENV_REPLICA_REGION, "us-west-2".into()),
            (settings::ENV_BUCKET_PAGE_SIZE, "10".into()),
            (
                settings::ENV_BUCKET_RETENTION_POLICY,
                "keep_daily=1,min_complete=1".into(),
            ),
        ];
        e.extend_from_slice(extra);
        e
    };
    let now = jiff::Timestamp::now();
    let slot1 = ScheduleSlot::new(now - jiff::SignedDuration::from_hours(20));
    let slot2 = ScheduleSlot::new(now - jiff::SignedDuration::from_hours(1));
    let payload = |slot: &ScheduleSlot| serde_json::json!({ "slot": slot.to_string() });
    let store = Store::new(&backups, "buckets", None);
    let replica_store = Store::new(&replica, "buckets", None);

    // Out of time after the first page: both buckets stop at a checkpoint, nothing complete.
    let r = backstop_tests::run_job(
        h,
        JobKind::Bucket,
        &env(&[(settings::ENV_BUCKET_TIME_BUDGET, "0".into())]),
        payload(&slot1),
    )
    .await;
    assert_eq!(r.selection, format!("buckets tagged backup={plan}"));
    assert_eq!(r.totals.selected, 2, "{r:#?}");
    assert_eq!(r.totals.started, 2, "{r:#?}");
    for b in [&attachments, &invoices] {
        assert!(
            matches!(target(&r, b).outcome, Outcome::Started { .. }),
            "{r:#?}"
        );
        assert!(backup::read_summary(&h.clients.s3, &store, b, &slot1)
            .await
            .unwrap()
            .is_none());
    }
    // The backup bucket carries the tag too, and is left out by name.
    assert!(
        r.excluded
            .iter()
            .any(|e| e.table == backups && e.reason.contains("Backstop's own bucket")),
        "{r:#?}"
    );
    assert!(r.targets.iter().all(|t| t.table != scratch));

    // The next delivery goes on from the checkpoints and completes, with the replica.
    let r = backstop_tests::run_job(h, JobKind::Bucket, &env(&[]), payload(&slot1)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    assert_eq!(r.totals.created, 2, "{r:#?}");
    assert_eq!(r.totals.items, 37);
    assert_eq!(r.totals.objects_copied, 37);
    for (b, n) in [(&attachments, 25u64), (&invoices, 12)] {
        let t = target(&r, b);
        let bt = t.bucket.as_ref().unwrap();
        assert_eq!(bt.objects, n);
        let rep = t.replica.as_ref().unwrap();
        assert!(rep.ok, "{rep:?}");
        assert_eq!(rep.lag_s, Some(0), "{rep:?}");
        let (osum, oentries) = backup::read_manifest(&h.clients.s3, &store, b, &slot1)
            .await
            .unwrap();
        let (rsum, rentries) = backup::read_manifest(&west, &replica_store, b, &slot1)
            .await
            .unwrap();
        assert_eq!(osum, rsum);
        assert_eq!(oentries, rentries);
        assert_eq!(bt.fingerprint.as_deref(), Some(osum.fingerprint.as_str()));
        assert_eq!(bt.prunes.len(), 2, "original and replica pruned: {bt:?}");
        assert!(
            bt.prunes.iter().all(|p| p.deleted == 0 && p.kept == 1),
            "{bt:?}"
        );
    }
    assert_eq!(
        bucket_metric(h, "BucketBackupSuccess", &attachments, None, Statistic::Sum).await,
        Some(1.0)
    );
    let replica_dim = replica_store.url(&replica_store.root(&attachments));
    assert_eq!(
        bucket_metric(
            h,
            "ReplicaLagSeconds",
            &attachments,
            Some(&replica_dim),
            Statistic::Maximum
        )
        .await,
        Some(0.0)
    );
    let told = backstop_testkit::local::receive_notifications(
        &h.config,
        &h.stack.queue_url,
        2,
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    let done_message = told
        .iter()
        .find(|m| {
            m.subject.starts_with("Backstop bucket OK") && m.message.contains("2 backed up now")
        })
        .unwrap_or_else(|| panic!("the run's message reached the queue: {told:#?}"));
    assert!(
        done_message.message.contains(&attachments),
        "{}",
        done_message.message
    );
    assert!(
        done_message.message.contains("replica"),
        "{}",
        done_message.message
    );
    // Names and counts only: no object key reaches the message.
    assert!(
        !done_message.message.contains("a/1.txt"),
        "{}",
        done_message.message
    );

    // A redelivery does nothing.
    let again = backstop_tests::run_job(h, JobKind::Bucket, &env(&[]), payload(&slot1)).await;
    assert_eq!(again.totals.already_done, 2, "{again:#?}");
    assert_eq!(again.totals.objects_copied, 0);
    assert_eq!(
        bucket_metric(h, "BucketBackupSuccess", &attachments, None, Statistic::Sum).await,
        Some(1.0),
        "a redelivery counts nothing twice"
    );

    // Three changes and a delete; the next slot copies just those, and the prune (keep one
    // daily) deletes slot 1 in both stores, sweeping the copies only slot 1 named.
    for i in 0..3 {
        put(h, &attachments, &format!("a/{i}.txt"), 2, 77, &mut model).await;
    }
    h.clients
        .s3
        .delete_object()
        .bucket(&attachments)
        .key("a/20.txt")
        .send()
        .await
        .unwrap();
    let r = backstop_tests::run_job(h, JobKind::Bucket, &env(&[]), payload(&slot2)).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let a = target(&r, &attachments).bucket.as_ref().unwrap();
    assert_eq!((a.objects, a.copied), (24, 3), "{a:?}");
    let i = target(&r, &invoices).bucket.as_ref().unwrap();
    assert_eq!((i.objects, i.copied), (12, 0), "{i:?}");
    for b in [&attachments, &invoices] {
        assert_eq!(target(&r, b).replica.as_ref().unwrap().lag_s, Some(0));
    }
    for bt in [a, i] {
        assert!(
            bt.prunes.iter().all(|p| p.deleted == 1 && p.kept == 1),
            "{bt:?}"
        );
    }
    assert_eq!(
        a.prunes[0].swept, 4,
        "3 old versions and the deleted object: {a:?}"
    );
    assert_eq!(r.totals.slots_pruned, 4);
    for (s3, st) in [(&*h.clients.s3, &store), (&west, &replica_store)] {
        for b in [&attachments, &invoices] {
            assert!(backup::read_summary(s3, st, b, &slot1)
                .await
                .unwrap()
                .is_none());
            let (_, entries) = backup::read_manifest(s3, st, b, &slot2).await.unwrap();
            let stored = backup::stored_ids(s3, st, b).await.unwrap();
            assert_eq!(
                stored.len(),
                entries.len(),
                "{b}: only what slot 2 names is kept"
            );
            assert!(entries.iter().all(|e| stored.contains_key(&e.stored)));
        }
    }

    // A dry run of a new slot plans and writes nothing.
    let before = backstop::export::s3io::list(&h.clients.s3, &backups, "")
        .await
        .unwrap();
    let plan_run = backstop_tests::run_job(
        h,
        JobKind::Bucket,
        &env(&[]),
        serde_json::json!({ "dry_run": true }),
    )
    .await;
    assert_eq!(plan_run.totals.planned, 2, "{plan_run:#?}");
    let after = backstop::export::s3io::list(&h.clients.s3, &backups, "")
        .await
        .unwrap();
    assert_eq!(before, after);
}

/// An object in an archive tier cannot be copied before a restore; it never stops the backup of
/// the rest of the bucket: it is left out and counted, with a warning that says what to do.
#[tokio::test]
async fn objects_in_archive_tiers_are_left_out_with_a_warning_and_the_rest_is_backed_up() {
    let s = Setup::new(&[]).await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    for i in 0..5 {
        put(
            h,
            &s.source,
            &format!("warm/{i}.txt"),
            1,
            100 + i,
            &mut model,
        )
        .await;
    }
    for (key, class) in [
        ("cold/glacier.bin", aws_sdk_s3::types::StorageClass::Glacier),
        (
            "cold/deep.bin",
            aws_sdk_s3::types::StorageClass::DeepArchive,
        ),
    ] {
        h.clients
            .s3
            .put_object()
            .bucket(&s.source)
            .key(key)
            .storage_class(class)
            .body(ByteStream::from(vec![7u8; 64]))
            .send()
            .await
            .unwrap();
    }
    let slot1 = slot("2026-12-01T02:00:00Z");
    let (sum, _) = done(s.backup(&slot1).await);
    assert_eq!(sum.objects, 5, "{sum:?}");
    assert_eq!(sum.archived, 2, "{sum:?}");
    assert!(
        sum.warnings
            .iter()
            .any(|w| w.contains("2 objects are in an archive tier") && w.contains("restore them")),
        "{sum:?}"
    );
    let (_, entries) = backup::read_manifest(&h.clients.s3, &s.store(), &s.source, &slot1)
        .await
        .unwrap();
    assert!(entries.iter().all(|e| e.key.starts_with("warm/")));
}

/// Writes an S3 Inventory report of `source` (all versions, CSV) in AWS's documented layout and
/// format, from what ListObjectVersions says now: manifest.json and one gzip CSV data file under
/// `<prefix>/<source>/all-versions/<YYYY-MM-DDTHH-MMZ>/`, keys URL-encoded with `+` for spaces.
async fn write_inventory(h: &Harness, source: &str, inv_bucket: &str, created: jiff::Timestamp) {
    use std::io::Write;
    let s3 = &h.clients.s3;
    let listed = s3
        .list_object_versions()
        .bucket(source)
        .send()
        .await
        .unwrap();
    let mut csv = String::new();
    let q = |v: &str| format!("\"{v}\"");
    for v in listed.versions() {
        let key: String = form_urlencoded::byte_serialize(v.key().unwrap().as_bytes()).collect();
        let row = [
            q(source),
            q(&key),
            q(v.version_id().unwrap_or("")),
            q(&v.is_latest().unwrap_or(false).to_string()),
            q("false"),
            q(&v.size().unwrap_or(0).to_string()),
            q(&v.last_modified()
                .unwrap()
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap()),
            q(v.e_tag().unwrap_or_default().trim_matches('"')),
            q(v.storage_class().map(|c| c.as_str()).unwrap_or("STANDARD")),
        ];
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    for m in listed.delete_markers() {
        let key: String = form_urlencoded::byte_serialize(m.key().unwrap().as_bytes()).collect();
        csv.push_str(&format!(
            "\"{source}\",\"{key}\",\"{}\",\"{}\",\"true\",\"\",\"2026-12-01T00:00:00.000Z\",\"\",\"\"\n",
            m.version_id().unwrap_or(""),
            m.is_latest().unwrap_or(false)
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    let data = gz.finish().unwrap();
    let folder = created.strftime("%Y-%m-%dT%H-%MZ").to_string();
    let base = format!("inventories/{source}/all-versions");
    let data_key = format!(
        "{base}/data/5f1b9c1e-0d6a-4c0e-9d8e-{}.csv.gz",
        folder.len()
    );
    s3.put_object()
        .bucket(inv_bucket)
        .key(&data_key)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "sourceBucket": source,
        "destinationBucket": format!("arn:aws:s3:::{inv_bucket}"),
        "version": "2016-11-30",
        "creationTimestamp": created.as_millisecond().to_string(),
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass",
        "files": [{"key": data_key, "size": data.len(), "MD5checksum": "not-checked"}]
    });
    s3.put_object()
        .bucket(inv_bucket)
        .key(format!("{base}/{folder}/manifest.json"))
        .body(ByteStream::from(manifest.to_string().into_bytes()))
        .send()
        .await
        .unwrap();
}

/// A backup read from an S3 Inventory report (AWS's CSV format) is the same backup a listing
/// makes: the same entries (so the listed slot after it copies nothing), across pages and
/// invocations; a report older than the configured age is not used, and the backup says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_read_from_an_s3_inventory_report_equals_one_from_listing() {
    let h0 = Harness::new().await;
    let inv_bucket = h0.name("inventory");
    make_bucket(&h0, &inv_bucket, false).await;
    let inventory = format!("s3://{inv_bucket}/inventories/{{bucket}}/all-versions");
    let s = Setup::new(&[(settings::ENV_BUCKET_INVENTORY, &inventory)]).await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    for (i, key) in keys(30).iter().enumerate() {
        put(h, &s.source, key, 1, 50 + i, &mut model).await;
    }
    put(h, &s.source, "plus+and space.txt", 1, 9, &mut model).await;
    // An older version and a deleted key: neither is in a slot.
    put(h, &s.source, "plus+and space.txt", 2, 11, &mut model).await;
    put(h, &s.source, "deleted soon", 1, 5, &mut model).await;
    h.clients
        .s3
        .delete_object()
        .bucket(&s.source)
        .key("deleted soon")
        .send()
        .await
        .unwrap();
    model.remove("deleted soon");
    // Made three hours ago: the slot stands for the bucket as the report saw it then.
    let report_made = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(3);
    write_inventory(h, &s.source, &inv_bucket, report_made).await;

    // Pages of 10 and a time limit already passed: the first call stops after one page, with
    // its place in the report in the checkpoint; the next call goes on from there.
    let slot1 = slot("2026-12-01T02:00:00Z");
    let first = backup::backup(
        &h.clients.s3,
        &s.catalog,
        &s.store(),
        &s.source,
        &slot1,
        &backstop::bucket::backup::BackupOptions {
            page_size: 10,
            ..s.settings.options.clone()
        },
        Some(jiff::Timestamp::now()),
        None,
    )
    .await
    .unwrap();
    assert!(
        matches!(&first, BackupOutcome::Continues { progress } if progress.inventory.is_some()),
        "{first:?}"
    );
    let (from_inventory, _) = done(s.backup(&slot1).await);
    assert_eq!(from_inventory.objects, model.len() as u64);
    let data_time: jiff::Timestamp = from_inventory
        .data_time
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (data_time - report_made).get_seconds().abs() <= 1,
        "the slot's time is the report's ({report_made}), not the listing's: {data_time}"
    );
    let recorded = backstop::bucket::record::get(&s.catalog, &s.source, &slot1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.data_time, data_time);
    assert!(
        from_inventory
            .warnings
            .iter()
            .any(|w| w.contains("listed from the S3 Inventory report")),
        "{from_inventory:?}"
    );
    let (_, entries) = backup::read_manifest(&h.clients.s3, &s.store(), &s.source, &slot1)
        .await
        .unwrap();
    let keys_backed_up: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert!(
        keys_backed_up.contains(&"plus+and space.txt"),
        "{keys_backed_up:?}"
    );
    assert!(keys_backed_up.contains(&"unicode/ünïcödé-€-2.txt"));

    // The same slot made by listing (another store, no inventory) names the same objects. A
    // catalog records the slots of one store: the other store has a catalog of its own.
    let listed_settings = BucketSettings::resolve(&h.env(&[
        (settings::ENV_BUCKET_BACKUP_BUCKET, &s.backups),
        (settings::ENV_BUCKET_BACKUP_PREFIX, "listed"),
        (settings::ENV_BACKFILL_WINDOW, "3650d"),
    ]))
    .unwrap();
    let listed_catalog_table = h.name("listed-catalog");
    backstop::catalog::create_catalog_table(&h.clients.dynamodb, &listed_catalog_table)
        .await
        .unwrap();
    let listed_catalog = Catalog::new((*h.clients.dynamodb).clone(), listed_catalog_table);
    let (from_listing, _) = done(
        backup::backup(
            &h.clients.s3,
            &listed_catalog,
            &listed_settings.store(),
            &s.source,
            &slot1,
            &listed_settings.options,
            None,
            None,
        )
        .await
        .unwrap(),
    );
    let (_, listed_entries) =
        backup::read_manifest(&h.clients.s3, &listed_settings.store(), &s.source, &slot1)
            .await
            .unwrap();
    let by_key =
        |e: &[backstop::bucket::ObjectEntry]| -> BTreeMap<String, backstop::bucket::ObjectEntry> {
            e.iter().map(|x| (x.key.clone(), x.clone())).collect()
        };
    assert_eq!(by_key(&entries), by_key(&listed_entries));
    assert_eq!(from_listing.objects, from_inventory.objects);

    // A report older than 48 hours is not used: that bucket is listed, and the backup says why.
    let stale = h.name("stale-source");
    make_bucket(h, &stale, true).await;
    let mut stale_model = BTreeMap::new();
    for i in 0..3 {
        put(h, &stale, &format!("s/{i}"), 1, 10, &mut stale_model).await;
    }
    write_inventory(
        h,
        &stale,
        &inv_bucket,
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72),
    )
    .await;
    let (sum, _) = done(
        backup::backup(
            &h.clients.s3,
            &s.catalog,
            &s.store(),
            &stale,
            &slot1,
            &s.settings.options,
            None,
            None,
        )
        .await
        .unwrap(),
    );
    assert_eq!(sum.objects, 3);
    assert!(
        sum.warnings
            .iter()
            .any(|w| w.contains("instead of S3 Inventory") && w.contains("is older than")),
        "{sum:?}"
    );
}

/// Issue 35: someone allowed only to invoke the bucket function, or to put one object into the
/// backup bucket, can neither rewrite nor erase a bucket's history, in the original or the
/// replica; a legal hold in the catalog keeps a slot from the prune.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfilled_slots_and_forged_control_files_change_nothing_and_a_hold_keeps_a_slot() {
    use backstop::report::{Outcome, RunStatus};
    use backstop::settings::JobKind;
    let h = Harness::new().await;
    let h = &h;
    let source = h.name("ledger");
    let backups = h.name("hist-backups");
    make_bucket(h, &source, true).await;
    make_bucket(h, &backups, true).await;
    let replica = h.name("hist-replica");
    let west = replica_in_us_west_2(h, &replica).await;
    let mut model = BTreeMap::new();
    for i in 0..6 {
        put(h, &source, &format!("l/{i}"), 1, 50 + i, &mut model).await;
    }
    let env = |policy: &str| -> Vec<(&'static str, String)> {
        vec![
            (settings::ENV_BUCKETS, source.clone()),
            (settings::ENV_BUCKET_BACKUP_BUCKET, backups.clone()),
            (settings::ENV_REPLICA_BUCKET, replica.clone()),
            (settings::ENV_REPLICA_REGION, "us-west-2".into()),
            (settings::ENV_BUCKET_RETENTION_POLICY, policy.to_owned()),
            (settings::ENV_BACKFILL_WINDOW, "26h".to_owned()),
        ]
    };
    let keep_all = "keep_last=20,min_complete=1";
    let store = Store::new(&backups, "buckets", None);
    let replica_store = Store::new(&replica, "buckets", None);
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), h.stack.catalog_table.clone());
    let now = jiff::Timestamp::now();
    let hours_ago = |n: i64| ScheduleSlot::new(now - jiff::SignedDuration::from_hours(n));
    let run = |slot: ScheduleSlot, policy: &'static str| {
        let env = env(policy);
        async move {
            backstop_tests::run_job(
                h,
                JobKind::Bucket,
                &env,
                serde_json::json!({ "slot": slot.to_string() }),
            )
            .await
        }
    };
    let slot_files = |s3: aws_sdk_s3::Client, st: Store, slot: ScheduleSlot| {
        let source = source.clone();
        async move {
            backstop::export::s3io::list(&s3, &st.bucket, &st.slot_prefix(&source, &slot))
                .await
                .unwrap()
        }
    };

    // Two real slots, in both stores.
    let (a, b) = (hours_ago(6), hours_ago(5));
    for slot in [a, b] {
        let r = run(slot, keep_all).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    }
    let real = backstop::bucket::record::get(&catalog, &source, &a)
        .await
        .unwrap()
        .unwrap();
    // The slot's time is its listing's, not the slot's.
    assert!(real.data_time >= now, "{real:?}");
    let summary_a = backup::read_summary(&h.clients.s3, &store, &source, &a)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary_a.token.as_deref(), Some(real.token.as_str()));
    assert_eq!(
        summary_a.data_time.as_deref(),
        Some(real.data_time.to_string().as_str())
    );

    // Backfill: the last second of past weeks, months and years, each refused by name; nothing
    // of them is written anywhere.
    let backfill = [
        "2026-11-29T23:59:59Z",
        "2026-11-30T23:59:59Z",
        "2026-10-31T23:59:59Z",
        "2025-12-31T23:59:59Z",
    ];
    for old in backfill {
        let slot = ScheduleSlot::parse(old).unwrap();
        let r = run(slot, keep_all).await;
        assert_eq!(r.status, RunStatus::Failed, "{r:#?}");
        let t = target(&r, &source);
        match &t.outcome {
            Outcome::Failed { error, .. } => {
                assert!(error.contains(old), "{error}");
                assert!(error.contains("backfill is refused"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(slot_files((*h.clients.s3).clone(), store.clone(), slot)
            .await
            .is_empty());
        assert!(backstop::bucket::record::get(&catalog, &source, &slot)
            .await
            .unwrap()
            .is_none());
    }
    // An old slot within the window but before the newest complete one: refused too.
    let r = run(hours_ago(7), keep_all).await;
    assert_eq!(r.status, RunStatus::Failed, "{r:#?}");

    // `{}` as pruning.json in every slot of both stores: the next prune deletes nothing.
    for (s3, st) in [(&*h.clients.s3, &store), (&west, &replica_store)] {
        for slot in [a, b] {
            s3.put_object()
                .bucket(&st.bucket)
                .key(format!("{}pruning.json", st.slot_prefix(&source, &slot)))
                .body(ByteStream::from_static(b"{}"))
                .send()
                .await
                .unwrap();
        }
    }
    // A checkpoint of the next slot moved past the last key, with no objects: not resumed.
    let c = hours_ago(4);
    let forged_checkpoint = serde_json::json!({
        "started_at": now.to_string(), "versioning": "Enabled",
        "key_marker": "~~~~", "version_marker": "null", "parts": 0, "digests": [],
        "objects": 0, "bytes": 0, "copied": 0, "copied_bytes": 0, "referenced": 0,
        "vanished": 0, "warnings": []
    });
    h.clients
        .s3
        .put_object()
        .bucket(&backups)
        .key(store.checkpoint_key(&source, &c))
        .body(ByteStream::from(forged_checkpoint.to_string().into_bytes()))
        .send()
        .await
        .unwrap();
    // A summary of the slot after it, written before it runs: not taken for a complete slot.
    let d = hours_ago(3);
    let mut forged_summary = summary_a.clone();
    forged_summary.slot = d.to_string();
    forged_summary.token = Some("forged".into());
    h.clients
        .s3
        .put_object()
        .bucket(&backups)
        .key(store.manifest_key(&source, &d))
        .body(ByteStream::from(
            serde_json::to_vec(&forged_summary).unwrap(),
        ))
        .send()
        .await
        .unwrap();
    // A whole slot directory of an old month that the catalog never recorded.
    let stray = ScheduleSlot::parse("2026-10-31T23:59:59Z").unwrap();
    h.clients
        .s3
        .put_object()
        .bucket(&backups)
        .key(store.manifest_key(&source, &stray))
        .body(ByteStream::from(
            serde_json::to_vec(&forged_summary).unwrap(),
        ))
        .send()
        .await
        .unwrap();

    let r = run(c, keep_all).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let t = target(&r, &source);
    let bt = t.bucket.as_ref().unwrap();
    assert_eq!(
        bt.objects, 6,
        "the forged checkpoint was not resumed: {bt:?}"
    );
    assert!(
        t.warnings
            .iter()
            .any(|w| w.contains("checkpoint.json") && w.contains("not Backstop's")),
        "{:?}",
        t.warnings
    );
    assert!(
        bt.prunes.iter().all(|p| p.deleted == 0),
        "pruning.json marks nothing: {bt:?}"
    );
    assert_eq!(
        bt.prunes[0].unknown_slots,
        vec![stray.compact(), d.compact()],
        "the stray slot and the forged next one are reported: {bt:?}"
    );
    assert_eq!(bt.prunes[0].blocked, None, "{bt:?}");
    assert!(
        t.warnings.iter().any(|w| w.contains(&stray.compact())),
        "{:?}",
        t.warnings
    );
    for (s3, st) in [(&*h.clients.s3, &store), (&west, &replica_store)] {
        for slot in [a, b, c] {
            assert!(
                backup::read_manifest(s3, st, &source, &slot).await.is_ok(),
                "{slot} in {}",
                st.bucket
            );
        }
    }
    // Slot C's real summary rewritten to name nothing (its token copied, the fingerprint of no
    // parts): the prune must not take that for the slot and sweep C's copies.
    let c_key = store.manifest_key(&source, &c);
    let real_c = h
        .clients
        .s3
        .get_object()
        .bucket(&backups)
        .key(&c_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let mut empty_c: backstop::bucket::Summary = serde_json::from_slice(&real_c).unwrap();
    empty_c.objects = 0;
    empty_c.parts = 0;
    empty_c.fingerprint = backstop::bucket::manifest::fingerprint_of_parts(&[]);
    let put_c = |body: Vec<u8>| {
        h.clients
            .s3
            .put_object()
            .bucket(&backups)
            .key(&c_key)
            .body(ByteStream::from(body))
            .send()
    };
    put_c(serde_json::to_vec(&empty_c).unwrap()).await.unwrap();
    let stored_before = backup::stored_ids(&h.clients.s3, &store, &source)
        .await
        .unwrap()
        .len();

    let r = run(d, keep_all).await;
    let t = target(&r, &source);
    assert!(
        matches!(t.outcome, Outcome::Created { .. }),
        "a forged summary is not a complete slot: {r:#?}"
    );
    let (summary_d, _) = backup::read_manifest(&h.clients.s3, &store, &source, &d)
        .await
        .unwrap();
    assert_ne!(summary_d.token.as_deref(), Some("forged"));
    let bt = t.bucket.as_ref().unwrap();
    assert!(
        bt.prunes[0]
            .blocked
            .as_deref()
            .unwrap_or_default()
            .contains("not the one the catalog records"),
        "{bt:?}"
    );
    assert_eq!(
        backup::stored_ids(&h.clients.s3, &store, &source)
            .await
            .unwrap()
            .len(),
        stored_before,
        "nothing swept"
    );
    put_c(real_c.to_vec()).await.unwrap();

    // A legal hold on slot A keeps it, and its copy, from a policy that keeps one.
    h.clients
        .dynamodb
        .update_item()
        .table_name(&h.stack.catalog_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("TARGET#bucket#{source}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("SLOT#{a}")),
        )
        .update_expression("SET legal_hold = :t")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .send()
        .await
        .unwrap();
    let e = hours_ago(2);
    let r = run(e, "keep_last=1,min_complete=1").await;
    assert_eq!(r.status, RunStatus::Succeeded, "{r:#?}");
    let bt = target(&r, &source).bucket.as_ref().unwrap();
    assert_eq!(bt.prunes[0].deleted, 3, "b, c and d: {bt:?}");
    assert_eq!(bt.prunes[0].held, 1, "{bt:?}");
    assert_eq!(bt.prunes[1].deleted, 3, "the replica follows: {bt:?}");
    for (s3, st) in [(&*h.clients.s3, &store), (&west, &replica_store)] {
        for slot in [a, e] {
            assert!(
                backup::read_manifest(s3, st, &source, &slot).await.is_ok(),
                "{slot} kept in {}",
                st.bucket
            );
        }
        for slot in [b, c, d] {
            assert!(
                backup::read_summary(s3, st, &source, &slot)
                    .await
                    .unwrap()
                    .is_none(),
                "{slot} pruned in {}",
                st.bucket
            );
        }
    }
    // Status reads the slots' records: the newest backup is the newest slot's data time (a
    // forged summary in S3 would not count either).
    let newest = backstop::bucket::record::get(&catalog, &source, &e)
        .await
        .unwrap()
        .unwrap();
    let status = backstop::status::gather(
        &h.clients,
        &catalog,
        &backstop::freshness::Limits {
            backup: jiff::SignedDuration::from_hours(26),
            export: None,
            pitr_lag: None,
        },
        backstop::status::Targets {
            tables: &[],
            buckets: std::slice::from_ref(&source),
            databases: &[],
        },
        jiff::Timestamp::now(),
    )
    .await;
    let line = status
        .lines
        .iter()
        .find(|l| l.kind == "bucket")
        .unwrap_or_else(|| panic!("{status:?}"));
    assert_eq!(line.newest_backup, Some(newest.data_time), "{line:?}");

    // The held slot still restores.
    let target_bucket = h.name("held-restore");
    make_bucket(h, &target_bucket, false).await;
    restore::restore_bucket(
        &h.clients.s3,
        &store,
        &source,
        &a,
        &target_bucket,
        None,
        false,
        false,
        &BucketSettings::resolve(&h.env(&[
            (settings::ENV_BUCKETS, &source),
            (settings::ENV_BUCKET_BACKUP_BUCKET, &backups),
        ]))
        .unwrap()
        .copy_options(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(read_bucket(h, &target_bucket).await, model);
}

/// Issue 35, legal holds: where the backup bucket has S3 Object Lock, a slot held in the catalog
/// is kept by the prune and its files and the copies it names get an Object Lock legal hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_slot_in_an_object_lock_store_gets_object_lock_legal_holds() {
    use aws_sdk_s3::types::ObjectLockLegalHoldStatus;
    let h = Harness::new().await;
    let h = &h;
    let source = h.name("locked-src");
    let backups = h.name("locked-backups");
    make_bucket(h, &source, true).await;
    h.clients
        .s3
        .create_bucket()
        .bucket(&backups)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let mut model = BTreeMap::new();
    for i in 0..4 {
        put(h, &source, &format!("k/{i}"), 1, 20 + i, &mut model).await;
    }
    let settings = BucketSettings::resolve(&h.env(&[
        (settings::ENV_BUCKETS, &source),
        (settings::ENV_BUCKET_BACKUP_BUCKET, &backups),
        (
            settings::ENV_BUCKET_RETENTION_POLICY,
            "keep_last=1,min_complete=1",
        ),
    ]))
    .unwrap();
    let catalog = Catalog::new((*h.clients.dynamodb).clone(), h.stack.catalog_table.clone());
    let store = settings.store();
    let now = jiff::Timestamp::now();
    let (a, b) = (
        ScheduleSlot::new(now - jiff::SignedDuration::from_hours(2)),
        ScheduleSlot::new(now - jiff::SignedDuration::from_hours(1)),
    );
    for slot in [a, b] {
        done(
            backup::backup(
                &h.clients.s3,
                &catalog,
                &store,
                &source,
                &slot,
                &settings.options,
                None,
                None,
            )
            .await
            .unwrap(),
        );
    }
    h.clients
        .dynamodb
        .update_item()
        .table_name(&h.stack.catalog_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("TARGET#bucket#{source}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("SLOT#{a}")),
        )
        .update_expression("SET legal_hold = :t")
        .expression_attribute_values(
            ":t",
            aws_sdk_dynamodb::types::AttributeValue::S("case 4711".into()),
        )
        .send()
        .await
        .unwrap();
    let policy = settings.policy.compile().unwrap();
    let report = prune::prune(
        &h.clients.s3,
        &catalog,
        &store,
        &source,
        &policy,
        jiff::Timestamp::now(),
        false,
        prune::Role::Original,
    )
    .await
    .unwrap();
    assert!(report.deleted_slots.is_empty(), "{report:?}");
    assert_eq!(report.held_slots, vec![a.compact()], "{report:?}");
    assert_eq!(report.locked_slots, vec![a.compact()], "{report:?}");
    let (_, entries) = backup::read_manifest(&h.clients.s3, &store, &source, &a)
        .await
        .unwrap();
    let mut keys = vec![
        store.manifest_key(&source, &a),
        store.part_key(&source, &a, 1),
    ];
    keys.extend(entries.iter().map(|e| store.object_key(&source, &e.stored)));
    for key in &keys {
        let got = h
            .clients
            .s3
            .get_object_legal_hold()
            .bucket(&backups)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert_eq!(
            got.legal_hold().and_then(|l| l.status()),
            Some(&ObjectLockLegalHoldStatus::On),
            "{key}"
        );
    }
    let rec = backstop::bucket::record::get(&catalog, &source, &a)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.locked_in, vec![backups.clone()]);
    // The next prune does not ask again, and still keeps it.
    let again = prune::prune(
        &h.clients.s3,
        &catalog,
        &store,
        &source,
        &policy,
        jiff::Timestamp::now(),
        false,
        prune::Role::Original,
    )
    .await
    .unwrap();
    assert!(
        again.locked_slots.is_empty() && again.deleted_slots.is_empty(),
        "{again:?}"
    );
}

/// An S3 client for us-west-2 and a bucket `name` made there: a replica in another region.
async fn replica_in_us_west_2(h: &Harness, name: &str) -> aws_sdk_s3::Client {
    let west_config = h
        .config
        .clone()
        .into_builder()
        .region(aws_config::Region::new("us-west-2"))
        .build();
    let west = (*backstop::aws::Clients::from_config(&west_config).s3).clone();
    west.create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .unwrap();
    west
}

/// Issue 35 (review): a prune that stopped after marking a slot PRUNING, and a legal hold set
/// since: the next prune gives the slot back instead of finishing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_a_prune_left_half_way_is_given_back_when_a_hold_came_since() {
    let s = Setup::new(&[(
        settings::ENV_BUCKET_RETENTION_POLICY,
        "keep_last=1,min_complete=1",
    )])
    .await;
    let h = &s.h;
    let mut model = BTreeMap::new();
    for k in ["x", "y"] {
        put(h, &s.source, k, 1, 30, &mut model).await;
    }
    let now = jiff::Timestamp::now();
    let a = ScheduleSlot::new(now - jiff::SignedDuration::from_hours(2));
    let b = ScheduleSlot::new(now - jiff::SignedDuration::from_hours(1));
    done(s.backup(&a).await);
    done(s.backup(&b).await);
    h.clients
        .dynamodb
        .update_item()
        .table_name(&h.stack.catalog_table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("TARGET#bucket#{}", s.source)),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("SLOT#{a}")),
        )
        .update_expression("SET #st = :p, legal_hold = :h")
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S("PRUNING".into()),
        )
        .expression_attribute_values(":h", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .send()
        .await
        .unwrap();
    let report = prune::prune(
        &h.clients.s3,
        &s.catalog,
        &s.store(),
        &s.source,
        &s.settings.policy.compile().unwrap(),
        jiff::Timestamp::now(),
        false,
        prune::Role::Original,
    )
    .await
    .unwrap();
    assert!(report.deleted_slots.is_empty(), "{report:?}");
    assert!(
        report.blocked.is_some(),
        "nothing swept this time: {report:?}"
    );
    let rec = backstop::bucket::record::get(&s.catalog, &s.source, &a)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.status,
        backstop::bucket::record::SlotStatus::Done,
        "{rec:?}"
    );
    assert!(
        backup::read_manifest(&h.clients.s3, &s.store(), &s.source, &a)
            .await
            .is_ok()
    );
    // Held and complete again: the next prune keeps it by its hold, and sweeps as usual.
    let next = prune::prune(
        &h.clients.s3,
        &s.catalog,
        &s.store(),
        &s.source,
        &s.settings.policy.compile().unwrap(),
        jiff::Timestamp::now(),
        false,
        prune::Role::Original,
    )
    .await
    .unwrap();
    assert_eq!(next.held_slots, vec![a.compact()], "{next:?}");
    assert!(
        next.deleted_slots.is_empty() && next.blocked.is_none(),
        "{next:?}"
    );
}
