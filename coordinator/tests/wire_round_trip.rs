//! The two edges of the wire together are lossless: a build request the
//! coordinator offers (every optimization override, the whole target, every
//! target setting) reaches the agent's build unchanged, through a real
//! encoded `Offer` frame.

use proptest::collection::vec;
use proptest::prelude::*;
use std::time::Duration;

use rustle_agent::wire::request_from_offer;
use rustle_cross::fleet::wire::offer_of;
use rustle_cross::targets::{
    BuildRequest, CLibraryLinking, CachePolicy, CompilationOptimization, LtoMode, OptimizationLevel, PanicStrategy,
    StripMode, Target, TargetSettings, TemplateId,
};
use rustle_protocol::{CoordinatorToAgent, JobId, JobOffer, MAX_FRAME_LEN, decode_frame, encode_frame};

fn level() -> impl Strategy<Value = OptimizationLevel> {
    use OptimizationLevel::*;
    prop_oneof![Just(Debug), Just(O1), Just(O2), Just(Release), Just(Size), Just(MinSize)]
}

fn lto() -> impl Strategy<Value = LtoMode> {
    prop_oneof![Just(LtoMode::Off), Just(LtoMode::ThinLocal), Just(LtoMode::Thin), Just(LtoMode::Fat)]
}

fn strip() -> impl Strategy<Value = StripMode> {
    prop_oneof![Just(StripMode::None), Just(StripMode::Debuginfo), Just(StripMode::Symbols)]
}

fn panic() -> impl Strategy<Value = PanicStrategy> {
    prop_oneof![Just(PanicStrategy::Unwind), Just(PanicStrategy::Abort)]
}

prop_compose! {
    fn optimization()(
        level in proptest::option::of(level()),
        lto in proptest::option::of(lto()),
        codegen_units in any::<Option<u32>>(),
        target_cpu in proptest::option::of("[a-z0-9-]{1,12}"),
        target_features in vec("[+-]?[a-z0-9_.]{1,8}", 0..4),
        strip in proptest::option::of(strip()),
        panic_strategy in proptest::option::of(panic()),
    ) -> CompilationOptimization {
        CompilationOptimization { level, lto, codegen_units, target_cpu, target_features, strip, panic_strategy }
    }
}

fn target() -> impl Strategy<Value = (Target, TargetSettings)> {
    let names = prop_oneof![
        Just("x86_64-unknown-linux-gnu"),
        Just("x86_64-unknown-linux-gnu.2.17"),
        Just("aarch64-unknown-linux-gnu.2.28"),
        Just("armv7-unknown-linux-gnueabihf"),
        Just("x86_64-pc-windows-gnu"),
        Just("aarch64-apple-darwin"),
    ];
    (
        names,
        vec("[a-z0-9_-]{1,10}", 0..3),
        vec("-C[a-z-]{1,10}=[a-z0-9]{1,4}", 0..3),
        proptest::option::of("[a-z0-9_/.-]{1,20}"),
        proptest::bool::ANY,
    )
        .prop_map(|(name, features, rustflags, linker, dynamic)| {
            let target = Target::from_triple(name).expect("a known target");
            let c_libraries = if dynamic { CLibraryLinking::Dynamic } else { CLibraryLinking::Static };
            (target, TargetSettings { features, rustflags, linker, docker_image: None, c_libraries })
        })
}

/// What an agent reads from an `Offer` the coordinator sent.
fn through_the_wire(offer: JobOffer) -> JobOffer {
    let frame = encode_frame(&CoordinatorToAgent::Offer(offer)).expect("encodes");
    match decode_frame::<CoordinatorToAgent>(&frame, MAX_FRAME_LEN).expect("decodes").0 {
        CoordinatorToAgent::Offer(offer) => offer,
        other => panic!("not an offer: {other:?}"),
    }
}

fn request(target: Target, settings: TargetSettings, optimization: CompilationOptimization) -> BuildRequest {
    BuildRequest {
        template: TemplateId("runner-0123456789ab".into()),
        target,
        settings,
        optimization,
        deadline: Duration::from_secs(60),
        incremental: true,
        cache: CachePolicy::Off,
    }
}

/// The size cap of the agent's own binary cache (it does not travel).
const AGENT_CACHE_CAP: u64 = 1 << 30;

/// What the agent's engine is asked when the coordinator offers `sent`.
fn arrived(sent: &BuildRequest) -> BuildRequest {
    let offer = through_the_wire(offer_of(JobId(7), sent, None, sent.deadline.as_secs()));
    // The agent names the template by its own unpacked copy; here, the same.
    request_from_offer(&offer, sent.template.clone(), Duration::from_secs(1), AGENT_CACHE_CAP)
        .expect("the agent parses it")
}

proptest! {
    #[test]
    fn every_optimization_override_and_target_setting_arrives_unchanged(
        optimization in optimization(),
        (target, settings) in target(),
    ) {
        let sent = request(target, settings, optimization);
        prop_assert_eq!(arrived(&sent), sent);
    }
}

#[test]
fn a_glibc_floor_travels_in_the_target_name() {
    let floor = Target::from_triple("x86_64-unknown-linux-gnu.2.17").expect("target");
    let sent = request(floor, TargetSettings::default(), CompilationOptimization::default());
    let offer = offer_of(JobId(1), &sent, None, 60);
    assert_eq!(offer.target.name, "x86_64-unknown-linux-gnu.2.17");
    let arrived = arrived(&sent);
    assert_eq!(arrived.target.glibc_floor.map(|f| f.to_string()).as_deref(), Some("2.17"));
}

#[test]
fn no_cache_travels_and_the_agent_uses_its_own_cap() {
    let target = Target::from_triple("aarch64-unknown-linux-gnu").expect("target");
    let mut sent = request(target, TargetSettings::default(), CompilationOptimization::default());
    assert_eq!(arrived(&sent).cache, CachePolicy::Off, "--no-cache reaches the agent");
    sent.cache = CachePolicy::Use { max_bytes: 7 };
    assert_eq!(arrived(&sent).cache, CachePolicy::Use { max_bytes: AGENT_CACHE_CAP });
}
