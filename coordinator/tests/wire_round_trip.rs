//! The two edges of the wire together are lossless: every optimization
//! override and every target setting the coordinator sends reaches the
//! agent's build unchanged, through a real encoded `Offer` frame.

use proptest::collection::vec;
use proptest::prelude::*;
use rustle_agent::wire::{optimization_from_wire, target_from_wire};
use rustle_cross::fleet::wire::{optimization_to_wire, target_to_wire};
use rustle_cross::targets::{
    CompilationOptimization, LtoMode, OptimizationLevel, PanicStrategy, StripMode, TargetSpecification,
};
use rustle_protocol::{CoordinatorToAgent, JobId, JobOffer, MAX_FRAME_LEN, TemplateId, decode_frame, encode_frame};

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

fn target() -> impl Strategy<Value = TargetSpecification> {
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
    )
        .prop_map(|(name, features, rustflags, linker)| {
            let mut target = TargetSpecification::from_triple(name).expect("a known target");
            target.features = features;
            target.rustflags = rustflags;
            target.linker = linker;
            target
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

proptest! {
    #[test]
    fn every_optimization_override_and_target_setting_arrives_unchanged(
        optimization in optimization(),
        target in target(),
    ) {
        let offer = through_the_wire(JobOffer {
            job: JobId(7),
            template_id: TemplateId("runner-0123".into()),
            target: target_to_wire(&target),
            toolchain: String::new(),
            optimization: optimization_to_wire(&optimization),
            deadline_secs: 60,
        });
        prop_assert_eq!(optimization_from_wire(&offer.optimization), optimization);
        let arrived = target_from_wire(&offer.target).expect("the agent parses it");
        prop_assert_eq!(arrived, target);
    }
}

#[test]
fn a_glibc_floor_travels_in_the_target_name() {
    let floor = TargetSpecification::from_triple("x86_64-unknown-linux-gnu.2.17").expect("target");
    let wire = target_to_wire(&floor);
    assert_eq!(wire.name, "x86_64-unknown-linux-gnu.2.17");
    let arrived = target_from_wire(&wire).expect("parses");
    assert_eq!(arrived.glibc_floor.map(|f| f.to_string()).as_deref(), Some("2.17"));
}
