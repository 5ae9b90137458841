//! Property tests: every wire message survives encode/decode, whole, split and truncated.

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use rustle_protocol::*;

// ---- strategies ----------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn triple() -> impl Strategy<Value = String> {
    "[a-z0-9_]{1,8}(-[a-z0-9_]{1,8}){1,3}"
}

fn job_id() -> impl Strategy<Value = JobId> {
    any::<u64>().prop_map(JobId)
}

fn template_id() -> impl Strategy<Value = TemplateId> {
    text().prop_map(TemplateId)
}

fn digest() -> impl Strategy<Value = Sha256Digest> {
    any::<[u8; 32]>().prop_map(Sha256Digest)
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN never equals itself", |x| !x.is_nan())
}

prop_compose! {
    fn load_average()(one in finite(), five in finite(), fifteen in finite()) -> LoadAverage {
        LoadAverage { one, five, fifteen }
    }
}

fn build_route() -> impl Strategy<Value = BuildRoute> {
    prop_oneof![Just(BuildRoute::PrebuiltStd), Just(BuildRoute::BuildStd), Just(BuildRoute::Zig),]
}

prop_compose! {
    fn toolchain_report()(
        name in text(),
        version in text(),
        host_triple in triple(),
        targets in vec((triple(), build_route()), 0..4),
    ) -> ToolchainReport {
        let targets = targets
            .into_iter()
            .map(|(triple, route)| BuildableTarget { triple, route })
            .collect();
        ToolchainReport { name, version, host_triple, targets }
    }
}

prop_compose! {
    fn warm_cache()(template_id in template_id(), triple in triple(), toolchain in text()) -> WarmCache {
        WarmCache { template_id, triple, toolchain }
    }
}

prop_compose! {
    fn capability_report()(
        agent_id in text().prop_map(AgentId),
        (agent_version, arch, os, os_version) in (text(), text(), text(), text()),
        libc in proptest::option::of((text(), text()).prop_map(|(name, version)| LibcReport { name, version })),
        (cores, memory_total_bytes, memory_available_bytes, disk_free_bytes) in any::<(u32, u64, u64, u64)>(),
        load in load_average(),
        toolchains in vec(toolchain_report(), 0..3),
        (docker_available, max_concurrent_jobs) in any::<(bool, u32)>(),
        warm_caches in vec(warm_cache(), 0..3),
    ) -> CapabilityReport {
        CapabilityReport {
            agent_id, agent_version, arch, os, os_version, libc, cores, memory_total_bytes,
            memory_available_bytes, load, disk_free_bytes, toolchains, docker_available,
            max_concurrent_jobs, warm_caches,
        }
    }
}

prop_compose! {
    fn load_update()(
        (sequence, running_jobs, memory_available_bytes, disk_free_bytes) in any::<(u64, u32, u64, u64)>(),
        load in load_average(),
    ) -> LoadUpdate {
        LoadUpdate { sequence, running_jobs, memory_available_bytes, load, disk_free_bytes }
    }
}

fn opt_level() -> impl Strategy<Value = OptLevel> {
    use OptLevel::*;
    prop_oneof![Just(O0), Just(O1), Just(O2), Just(O3), Just(S), Just(Z)]
}

fn lto() -> impl Strategy<Value = Lto> {
    prop_oneof![Just(Lto::Off), Just(Lto::ThinLocal), Just(Lto::Thin), Just(Lto::Fat)]
}

fn strip() -> impl Strategy<Value = Strip> {
    prop_oneof![Just(Strip::None), Just(Strip::Debuginfo), Just(Strip::Symbols)]
}

fn panic_strategy() -> impl Strategy<Value = PanicStrategy> {
    prop_oneof![Just(PanicStrategy::Unwind), Just(PanicStrategy::Abort)]
}

prop_compose! {
    fn optimization()(
        opt_level in proptest::option::of(opt_level()),
        lto in proptest::option::of(lto()),
        codegen_units in any::<Option<u32>>(),
        target_cpu in proptest::option::of(text()),
        target_features in vec(text(), 0..4),
        strip in proptest::option::of(strip()),
        panic in proptest::option::of(panic_strategy()),
    ) -> OptimizationSettings {
        OptimizationSettings { opt_level, lto, codegen_units, target_cpu, target_features, strip, panic }
    }
}

prop_compose! {
    fn job_offer()(
        job in job_id(),
        template_id in template_id(),
        target in build_target(),
        toolchain in text(),
        optimization in optimization(),
        deadline_secs in any::<u64>(),
        use_cache in any::<bool>(),
    ) -> JobOffer {
        JobOffer { job, template_id, target, toolchain, optimization, deadline_secs, use_cache }
    }
}

prop_compose! {
    fn build_target()(
        name in triple(),
        features in vec(text(), 0..4),
        rustflags in vec(text(), 0..4),
        linker in proptest::option::of(text()),
        dynamic in any::<bool>(),
    ) -> BuildTarget {
        let c_libraries = if dynamic { CLinking::Dynamic } else { CLinking::Static };
        BuildTarget { name, features, rustflags, linker, c_libraries }
    }
}

fn reject_reason() -> impl Strategy<Value = RejectReason> {
    prop_oneof![
        any::<(u32, u32)>().prop_map(|(running, max)| RejectReason::AtCapacity { running, max }),
        triple().prop_map(|triple| RejectReason::UnsupportedTarget { triple }),
        text().prop_map(|toolchain| RejectReason::ToolchainMissing { toolchain }),
        Just(RejectReason::ShuttingDown),
    ]
}

fn build_event() -> impl Strategy<Value = BuildEvent> {
    let stream = prop_oneof![Just(LogStream::Stdout), Just(LogStream::Stderr)];
    prop_oneof![
        any::<u32>().prop_map(|position| BuildEvent::Queued { position }),
        Just(BuildEvent::Started),
        any::<(u32, u32)>().prop_map(|(done, total)| BuildEvent::Progress { done, total }),
        (stream, text()).prop_map(|(stream, line)| BuildEvent::Log { stream, line }),
    ]
}

fn build_outcome() -> impl Strategy<Value = BuildOutcome> {
    prop_oneof![
        (digest(), any::<(u64, u64, bool)>(), text(), text(), text(), vec(text(), 0..4)).prop_map(
            |(
                checksum,
                (size, compile_time_ms, from_cache),
                toolchain,
                rustc_version,
                cargo_version,
                compilation_flags,
            )| {
                BuildOutcome::Success {
                    checksum,
                    size,
                    compile_time_ms,
                    toolchain,
                    rustc_version,
                    cargo_version,
                    compilation_flags,
                    from_cache,
                }
            }
        ),
        "\\PC{0,512}".prop_map(|diagnostics| BuildOutcome::CompileFailed { diagnostics }),
        (text(), any::<bool>())
            .prop_map(|(reason, retryable)| BuildOutcome::InfrastructureFailure { reason, retryable }),
        Just(BuildOutcome::Cancelled),
    ]
}

fn bulk_kind() -> impl Strategy<Value = BulkKind> {
    prop_oneof![Just(BulkKind::SourceBundle), Just(BulkKind::Artifact)]
}

prop_compose! {
    fn bulk_header()(
        kind in bulk_kind(),
        job in job_id(),
        file_name in text(),
        total_len in any::<u64>(),
        sha256 in digest(),
    ) -> BulkHeader {
        BulkHeader { kind, job, file_name, total_len, sha256 }
    }
}

fn bulk_ack() -> impl Strategy<Value = BulkAck> {
    prop_oneof![
        (job_id(), bulk_kind()).prop_map(|(job, kind)| BulkAck::Verified { job, kind }),
        (job_id(), bulk_kind(), text()).prop_map(|(job, kind, reason)| BulkAck::Rejected { job, kind, reason }),
    ]
}

prop_compose! {
    fn hello()(
        protocol_version in any::<u32>(),
        software_version in text(),
        role in prop_oneof![Just(Role::Coordinator), Just(Role::Agent)],
    ) -> Hello {
        Hello { protocol_version, software_version, role }
    }
}

fn coordinator_to_agent() -> impl Strategy<Value = CoordinatorToAgent> {
    prop_oneof![
        job_offer().prop_map(CoordinatorToAgent::Offer),
        job_id().prop_map(|job| CoordinatorToAgent::Cancel { job }),
        bulk_ack().prop_map(CoordinatorToAgent::BulkAck),
    ]
}

fn agent_to_coordinator() -> impl Strategy<Value = AgentToCoordinator> {
    prop_oneof![
        capability_report().prop_map(AgentToCoordinator::Capabilities),
        load_update().prop_map(AgentToCoordinator::Load),
        job_id().prop_map(|job| AgentToCoordinator::Accept { job }),
        (job_id(), reject_reason()).prop_map(|(job, reason)| AgentToCoordinator::Reject { job, reason }),
        (job_id(), build_event()).prop_map(|(job, event)| AgentToCoordinator::Event { job, event }),
        (job_id(), build_outcome()).prop_map(|(job, outcome)| AgentToCoordinator::Finished { job, outcome }),
        bulk_ack().prop_map(AgentToCoordinator::BulkAck),
        any::<u64>().prop_map(|drain_secs| AgentToCoordinator::Draining { drain_secs }),
    ]
}

// ---- properties ----------------------------------------------------------

/// Encodes `message`, decodes it back whole, then checks that every strict
/// prefix of its frame is `Incomplete` and that a byte-at-a-time decoder
/// yields it exactly once, at the last byte.
fn assert_round_trip<M: WireMessage + PartialEq + Clone + Debug>(message: &M) -> Result<(), TestCaseError> {
    let frame = encode_frame(message).map_err(|error| TestCaseError::fail(error.to_string()))?;
    prop_assert_eq!(decode_frame::<M>(&frame, MAX_FRAME_LEN), Ok((message.clone(), frame.len())));
    for end in 0..frame.len() {
        match decode_frame::<M>(&frame[..end], MAX_FRAME_LEN) {
            Err(CodecError::Incomplete { have, need }) => {
                prop_assert_eq!(have, end);
                prop_assert!(need > end && need <= frame.len());
            }
            other => prop_assert!(false, "prefix of {end} bytes gave {other:?}"),
        }
    }
    let mut decoder = FrameDecoder::new();
    for (at, byte) in frame.iter().enumerate() {
        prop_assert_eq!(decoder.finish().is_err(), at > 0);
        decoder.push_bytes(&[*byte]);
        let polled = decoder.poll_message::<M>();
        if at + 1 < frame.len() {
            prop_assert_eq!(polled, Ok(None));
        } else {
            prop_assert_eq!(polled, Ok(Some(message.clone())));
        }
    }
    prop_assert_eq!(decoder.finish(), Ok(()));
    Ok(())
}

proptest! {
    #[test]
    fn hello_round_trips(message in hello()) {
        assert_round_trip(&message)?;
    }

    #[test]
    fn bulk_header_round_trips(message in bulk_header()) {
        assert_round_trip(&message)?;
    }

    #[test]
    fn job_offer_round_trips(offer in job_offer()) {
        assert_round_trip(&CoordinatorToAgent::Offer(offer))?;
    }

    #[test]
    fn cancel_round_trips(job in job_id()) {
        assert_round_trip(&CoordinatorToAgent::Cancel { job })?;
    }

    #[test]
    fn artifact_ack_round_trips(ack in bulk_ack()) {
        assert_round_trip(&CoordinatorToAgent::BulkAck(ack))?;
    }

    #[test]
    fn capability_report_round_trips(report in capability_report()) {
        assert_round_trip(&AgentToCoordinator::Capabilities(report))?;
    }

    #[test]
    fn load_update_round_trips(update in load_update()) {
        assert_round_trip(&AgentToCoordinator::Load(update))?;
    }

    #[test]
    fn accept_round_trips(job in job_id()) {
        assert_round_trip(&AgentToCoordinator::Accept { job })?;
    }

    #[test]
    fn reject_round_trips(job in job_id(), reason in reject_reason()) {
        assert_round_trip(&AgentToCoordinator::Reject { job, reason })?;
    }

    #[test]
    fn build_event_round_trips(job in job_id(), event in build_event()) {
        assert_round_trip(&AgentToCoordinator::Event { job, event })?;
    }

    #[test]
    fn build_outcome_round_trips(job in job_id(), outcome in build_outcome()) {
        assert_round_trip(&AgentToCoordinator::Finished { job, outcome })?;
    }

    #[test]
    fn source_bundle_ack_round_trips(ack in bulk_ack()) {
        assert_round_trip(&AgentToCoordinator::BulkAck(ack))?;
    }

    /// A stream of frames cut into arbitrary reads decodes to the same
    /// messages in order; cut short anywhere inside a frame, `finish` says so.
    #[test]
    fn stream_in_any_chunks_decodes_in_order(
        messages in vec(agent_to_coordinator(), 1..8),
        cuts in vec(any::<prop::sample::Index>(), 0..16),
        truncate_by in any::<prop::sample::Index>(),
    ) {
        let frames: Vec<Vec<u8>> = messages
            .iter()
            .map(|message| encode_frame(message).map_err(|e| TestCaseError::fail(e.to_string())))
            .collect::<Result<_, _>>()?;
        let stream = frames.concat();
        let last_frame_len = frames.last().map_or(0, Vec::len);
        let stream = &stream[..stream.len() - truncate_by.index(last_frame_len)];

        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        cuts.extend([0, stream.len()]);
        cuts.sort_unstable();
        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for pair in cuts.windows(2) {
            decoder.push_bytes(&stream[pair[0]..pair[1]]);
            while let Some(message) = decoder.poll_message::<AgentToCoordinator>()? {
                decoded.push(message);
            }
        }
        if decoded.len() == messages.len() {
            prop_assert_eq!(decoder.finish(), Ok(()));
        } else {
            prop_assert_eq!(decoded.len(), messages.len() - 1);
            let is_incomplete = matches!(decoder.finish(), Err(CodecError::Incomplete { .. }));
            prop_assert!(is_incomplete);
        }
        prop_assert_eq!(&decoded[..], &messages[..decoded.len()]);
    }

    #[test]
    fn coordinator_stream_round_trips(message in coordinator_to_agent()) {
        assert_round_trip(&message)?;
    }
}
