//! `#[sansio::task]` dispatch: each input reaches its own handler, outputs
//! come out in the order they were produced, and the generated input enum,
//! conversions and constants are what the documentation says.

use std::time::Duration;

use sansio::Task;
use sansio::prelude::*;
use sansio::testing::TaskHarness;
use sansio::{Action, Handles};

#[derive(Debug, PartialEq)]
pub struct Packet {
    pub from: u16,
    pub data: Vec<u8>,
}

#[derive(Debug, PartialEq)]
pub struct GetStats;

#[derive(Debug, PartialEq)]
pub enum Out {
    Echo(Vec<u8>),
    Line(String),
    Number(u64),
    Pair(u8, char),
    Stats { packets: u64, lines: u64 },
}

#[sansio::task(output = Out)]
#[derive(Debug, Default)]
pub struct Router {
    packets: u64,
    lines: u64,
    calls: Vec<&'static str>,
}

#[sansio::task]
impl Router {
    /// A plain method beside the handlers is left alone.
    pub fn calls(&self) -> &[&'static str] {
        &self.calls
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: Packet) {
        self.calls.push("packet");
        self.packets += 1;
        // Several outputs for one input: they must come out in this order.
        ctx.emit(Out::Number(u64::from(packet.from)));
        ctx.emit(Out::Echo(packet.data));
    }

    #[on_input]
    fn line(&mut self, ctx: &mut Ctx<Self>, line: String) {
        self.calls.push("line");
        self.lines += 1;
        ctx.emit(Out::Line(line));
    }

    #[on_input]
    fn pair(&mut self, ctx: &mut Ctx<Self>, (byte, letter): (u8, char)) {
        self.calls.push("pair");
        ctx.emit(Out::Pair(byte, letter));
    }

    #[on_input]
    fn get_stats(&mut self, ctx: &mut Ctx<Self>, _: GetStats) {
        self.calls.push("get_stats");
        ctx.emit(Out::Stats {
            packets: self.packets,
            lines: self.lines,
        });
    }
}

#[test]
fn each_input_reaches_its_own_handler() {
    let mut router = TaskHarness::new(Router::default());
    router
        .input("hello".to_owned())
        .input(GetStats)
        .input(Packet {
            from: 7,
            data: vec![1, 2],
        })
        .input((3u8, 'x'));
    assert_eq!(
        router.task().calls(),
        ["line", "get_stats", "packet", "pair"]
    );
}

#[test]
fn outputs_come_out_in_the_order_they_were_produced() {
    let mut router = TaskHarness::new(Router::default());
    router
        .input(Packet {
            from: 1,
            data: b"a".to_vec(),
        })
        .input("b".to_owned())
        .input(Packet {
            from: 2,
            data: b"c".to_vec(),
        })
        .input(GetStats);
    assert_eq!(
        router.drain(),
        [
            Out::Number(1),
            Out::Echo(b"a".to_vec()),
            Out::Line("b".to_owned()),
            Out::Number(2),
            Out::Echo(b"c".to_vec()),
            Out::Stats {
                packets: 2,
                lines: 1
            },
        ]
    );
    assert!(router.drain().is_empty(), "drain takes the outputs");
}

#[test]
fn drain_actions_shows_every_action_in_order() {
    let mut router = TaskHarness::new(Router::default());
    router.input("x".to_owned()).input(GetStats);
    let actions = router.drain_actions();
    assert_eq!(actions.len(), 2);
    assert!(matches!(&actions[0], Action::Emit(Out::Line(line)) if line == "x"));
    assert!(matches!(
        &actions[1],
        Action::Emit(Out::Stats {
            packets: 0,
            lines: 1
        })
    ));
}

#[test]
fn the_input_enum_has_one_variant_per_handler_named_after_it() {
    let inputs: [RouterInput; 4] = [
        Packet {
            from: 1,
            data: vec![],
        }
        .into(),
        String::from("s").into(),
        (1u8, 'a').into(),
        GetStats.into(),
    ];
    assert!(matches!(
        inputs[0],
        RouterInput::Packet(Packet { from: 1, .. })
    ));
    assert!(matches!(&inputs[1], RouterInput::Line(line) if line == "s"));
    assert!(matches!(inputs[2], RouterInput::Pair((1, 'a'))));
    assert!(matches!(inputs[3], RouterInput::GetStats(GetStats)));
    // Debug works whatever the input types implement, and names the variant.
    let debug: Vec<String> = inputs.iter().map(|input| format!("{input:?}")).collect();
    assert_eq!(
        debug,
        [
            "RouterInput::Packet(..)",
            "RouterInput::Line(..)",
            "RouterInput::Pair(..)",
            "RouterInput::GetStats(..)",
        ]
    );
}

#[test]
fn the_input_enum_itself_can_be_sent() {
    let mut router = TaskHarness::new(Router::default());
    router.input(RouterInput::Line("via enum".to_owned()));
    assert_eq!(router.drain(), [Out::Line("via enum".to_owned())]);
    assert!(matches!(
        <Router as Handles<GetStats>>::wrap(GetStats),
        RouterInput::GetStats(GetStats)
    ));
}

#[test]
fn the_task_impl_carries_the_declared_name_and_no_tick() {
    assert_eq!(Router::NAME, "Router");
    assert_eq!(Router::TICK_INTERVAL, None);
}

/// A task with no handlers at all: an empty input enum, and the default
/// output type `()`.
#[sansio::task]
pub struct Idle;

#[sansio::task]
impl Idle {}

#[test]
fn a_task_without_handlers_starts_and_shuts_down() {
    let mut idle = TaskHarness::new(Idle);
    assert_eq!(idle.next_wakeup(), None);
    idle.advance(Duration::from_secs(3600));
    assert!(!idle.is_finished());
    idle.shutdown();
    assert!(idle.is_finished(), "the default on_shutdown finishes");
    let _: Vec<()> = idle.drain();
}

/// Raw identifiers and underscores in handler names still give valid,
/// readable variant names.
#[sansio::task(output = &'static str)]
pub struct Names;

#[sansio::task]
impl Names {
    #[on_input]
    fn r#type(&mut self, ctx: &mut Ctx<Self>, _: u8) {
        ctx.emit("type");
    }

    #[on_input]
    fn udp_packet_v6(&mut self, ctx: &mut Ctx<Self>, _: u16) {
        ctx.emit("udp_packet_v6");
    }

    #[on_tick(every_ms = 250)]
    fn tick(&mut self, _: &mut Ctx<Self>) {}
}

#[test]
fn variant_names_are_upper_camel_case_method_names() {
    assert!(matches!(NamesInput::from(1u8), NamesInput::Type(1)));
    assert!(matches!(NamesInput::from(2u16), NamesInput::UdpPacketV6(2)));
    let mut names = TaskHarness::new(Names);
    names.input(1u8).input(2u16);
    assert_eq!(names.drain(), ["type", "udp_packet_v6"]);
    assert_eq!(Names::TICK_INTERVAL, Some(Duration::from_millis(250)));
}

/// `crate = path` lets a crate that re-exports sansio use the macros.
mod facade {
    pub use ::sansio as runtime;
}

#[sansio::task(crate = crate::facade::runtime, output = u32)]
pub struct ThroughFacade;

#[sansio::task(crate = crate::facade::runtime)]
impl ThroughFacade {
    #[on_input]
    fn double(&mut self, ctx: &mut facade::runtime::Ctx<Self>, n: u32) {
        ctx.emit(n * 2);
    }
}

#[test]
fn crate_path_is_used_by_the_generated_code() {
    let mut task = TaskHarness::new(ThroughFacade);
    task.input(21u32);
    assert_eq!(task.drain(), [42]);
}

/// A private task in a private module, with private input types: the
/// generated enum must not leak anything or warn.
mod private {
    use sansio::prelude::*;

    struct Secret(u8);

    #[sansio::task(output = u8)]
    pub(super) struct Hidden;

    #[sansio::task]
    impl Hidden {
        #[on_input]
        fn secret(&mut self, ctx: &mut Ctx<Self>, secret: Secret) {
            ctx.emit(secret.0);
        }
    }

    pub(super) fn run() -> Vec<u8> {
        let mut hidden = sansio::testing::TaskHarness::new(Hidden);
        hidden.input(Secret(9));
        hidden.drain()
    }
}

#[test]
fn private_tasks_and_inputs_work() {
    assert_eq!(private::run(), [9]);
}
