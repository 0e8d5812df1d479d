//! The read side: sweeps listed a page at a time, workers shown as gone, results in pages.

use super::*;

/// ListSweeps pages: newest first, a page at a time with the total, and a token it did not give is
/// refused.
#[tokio::test]
async fn sweeps_are_listed_a_page_at_a_time_newest_first() {
    let (mut c, _dir) = start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(c.submit(SWEEP).await.sweep_id);
    }
    let page = |token: &str| pb::ListSweepsRequest {
        page_size: 2,
        page_token: token.into(),
    };
    let first = c.sweeps.list_sweeps(page("")).await.unwrap().into_inner();
    assert_eq!(first.total, 3);
    let second = c
        .sweeps
        .list_sweeps(page(&first.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert!(second.next_page_token.is_empty(), "the last page");
    let listed: Vec<String> = first
        .sweeps
        .iter()
        .chain(&second.sweeps)
        .map(|s| s.sweep_id.clone())
        .collect();
    ids.reverse();
    assert_eq!(listed, ids, "every sweep once, newest first");
    let bad = c.sweeps.list_sweeps(page("nonsense")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    // A page past the end is empty; a page size past the bound is cut to it.
    let past = c
        .sweeps
        .list_sweeps(pb::ListSweepsRequest {
            page_size: u32::MAX,
            page_token: u32::MAX.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(past.sweeps.is_empty() && past.next_page_token.is_empty());
    assert_eq!(past.total, 3);
}

/// A worker that stops heartbeating is shown as gone once ten heartbeats have passed.
#[tokio::test]
async fn a_silent_worker_is_shown_as_gone() {
    let (mut c, _dir) = start().await;
    let id = c.register("h", 1).await;
    let list = |c: &mut TestCoordinator| {
        let mut s = c.sweeps.clone();
        async move {
            s.list_workers(pb::ListWorkersRequest {})
                .await
                .unwrap()
                .into_inner()
                .workers
        }
    };
    assert!(!list(&mut c).await[0].gone);
    c.advance(Duration::from_secs(9)).await;
    assert!(
        !list(&mut c).await[0].gone,
        "nine silent heartbeats: not gone yet"
    );
    c.advance(Duration::from_secs(2)).await;
    let workers = list(&mut c).await;
    // Listed by name only: the id's secret part is never shown.
    assert_eq!(
        (workers[0].worker_id.as_str(), workers[0].gone),
        (worker_name(&id), true)
    );
    assert_ne!(workers[0].worker_id, id);
}

/// Results read back a page at a time, every row once, the best index counted over all pages, the
/// dataset named once; a token this server did not give is refused.
#[tokio::test]
async fn results_come_in_pages() {
    let (mut c, _dir) = start().await;
    let sweep = c
        .submit(&SWEEP.replace("seed = [0, 1]", "seed = [0]").replace(
            "batch_size = [64, 128]",
            "batch_size = [16, 32, 64, 128, 256]",
        ))
        .await;
    let id = c.register("h", 8).await;
    let leases = c.lease(&id, 8).await;
    assert_eq!(leases.len(), 5);
    for (i, lease) in leases.iter().enumerate() {
        let acc = [0.5, 0.9, 0.6, 0.7, 0.55][i];
        c.workers
            .complete_job(pb::CompleteJobRequest {
                worker_id: id.clone(),
                lease_id: lease.lease_id.clone(),
                result: Some(pb::TrialResult {
                    params: 117,
                    test_acc: acc,
                    best_epoch: 1,
                    best_test_acc: acc,
                }),
                epochs: vec![pb::EpochMetrics {
                    val_loss: 1.0 - acc,
                    ..epoch(1)
                }],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let (mut rows, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = c
            .sweeps
            .get_results(pb::GetResultsRequest {
                sweep_id: sweep.sweep_id.clone(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert_eq!((page.total_rows, page.best), (5, 1));
        assert!(page.dataset.as_ref().unwrap().synthetic);
        rows.extend(page.rows.into_iter().map(|r| r.spec.unwrap().batch_size));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((pages, rows), (3, vec![16, 32, 64, 128, 256]));

    // Curves page the same way: every job once, in grid order; a page size past the limit is
    // clamped; tokens this server did not give and unknown sweeps are refused.
    let curves = |page_size: u32, page_token: &str, sweep_id: &str| {
        let mut sweeps = c.sweeps.clone();
        let request = pb::GetCurvesRequest {
            sweep_id: sweep_id.to_string(),
            page_size,
            page_token: page_token.to_string(),
        };
        async move { sweeps.get_curves(request).await.map(|r| r.into_inner()) }
    };
    let (mut jobs, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = curves(2, &token, &sweep.sweep_id).await.unwrap();
        pages += 1;
        assert!(page.jobs.iter().all(|j| j.epochs.len() == 1), "{page:?}");
        jobs.extend(page.jobs.into_iter().map(|j| j.job_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let leased: Vec<String> = leases.iter().map(|l| l.job_id.clone()).collect();
    assert_eq!((pages, jobs), (3, leased));
    let all = curves(u32::MAX, "", &sweep.sweep_id).await.unwrap();
    assert_eq!((all.jobs.len(), all.next_page_token.as_str()), (5, ""));
    for token in ["x", "99999999999", "1.x", "-1"] {
        let refused = curves(2, token, &sweep.sweep_id).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{token}");
    }
    let unknown = curves(2, "", "no-such-sweep").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let bad = c
        .sweeps
        .get_results(pb::GetResultsRequest {
            sweep_id: sweep.sweep_id.clone(),
            page_size: 2,
            page_token: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // The decision log and the audit log refuse page tokens they did not give, too.
    for token in ["x", "-1", "1.x"] {
        let refused = c
            .sweeps
            .clone()
            .list_decisions(pb::ListDecisionsRequest {
                sweep_id: sweep.sweep_id.clone(),
                page_size: 2,
                page_token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{token}");
        let refused = c
            .sweeps
            .clone()
            .list_audit(pb::ListAuditRequest {
                page_token: token.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{token}");
    }
    // The submission is in the audit log (an open coordinator: by "anonymous").
    let audit = c
        .sweeps
        .clone()
        .list_audit(pb::ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(audit.entries.len(), 1);
    assert_eq!(
        (
            audit.entries[0].who.as_str(),
            audit.entries[0].action.as_str()
        ),
        ("anonymous", "submit")
    );
}
