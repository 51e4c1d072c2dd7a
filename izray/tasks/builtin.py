"""Eight small built-in tasks, generated deterministically by code.

They need no data download, so they serve for smoke tests, demos and CI. Each has a pool of
:data:`N_POOL` examples and a separate test split of :data:`N_TEST` examples whose inputs do not
occur in the pool. All use the ``exact_match`` metric.

* ``larger_number``: ``"17, 42"`` -> ``"42"``.
* ``last_item``: ``"cat, dog, bird"`` -> ``"bird"``.
* ``first_letter``: ``"apple"`` -> ``"a"``.
* ``plural``: ``"fox"`` -> ``"foxes"`` (mostly regular nouns, some irregular ones).
* ``smaller_number``: ``"17, 42"`` -> ``"17"``.
* ``first_item``: ``"cat, dog, bird"`` -> ``"cat"``.
* ``reverse_word``: ``"apple"`` -> ``"elppa"``.
* ``add_one``: ``"41"`` -> ``"42"``.

Each is an operation the black-box simulator (:mod:`izray.testing.simulator`) knows, so the
simulated landscapes have eight tasks to compare strategies on.

Generation uses :class:`random.Random` with a fixed seed per task but draws only through
``Random.random()``, the one method whose sequence Python guarantees across versions; integer
draws and shuffles are implemented here on top of it. So every process and Python version builds
the same tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache

from izray.errors import TaskError
from izray.tasks.base import Example, Task

__all__ = [
    "BUILTIN_TASKS",
    "N_POOL",
    "N_TEST",
    "PLURALS",
    "is_builtin",
    "load_builtin_task",
]

N_POOL = 200
"""Number of pool examples of each built-in task."""

N_TEST = 50
"""Number of test examples of each built-in task (disjoint from the pool by input)."""

# (singular, plural) pairs, "singular:plural" separated by white space.
_PLURALS_TEXT = """
    anchor:anchors apple:apples arm:arms bag:bags ball:balls banana:bananas
    bank:banks basket:baskets bed:beds bell:bells bird:birds blanket:blankets
    boat:boats book:books bottle:bottles brick:bricks bridge:bridges brother:brothers
    bucket:buckets button:buttons cabin:cabins cake:cakes camera:cameras candle:candles
    canoe:canoes car:cars card:cards carpet:carpets castle:castles cat:cats
    chair:chairs cloud:clouds coat:coats coin:coins computer:computers cookie:cookies
    cup:cups desk:desks diamond:diamonds dog:dogs dolphin:dolphins door:doors
    dragon:dragons drum:drums duck:ducks eagle:eagles ear:ears egg:eggs
    elephant:elephants engine:engines eye:eyes falcon:falcons farm:farms feather:feathers
    finger:fingers flag:flags flower:flowers forest:forests friend:friends frog:frogs
    garage:garages garden:gardens gate:gates girl:girls glove:gloves goat:goats
    guitar:guitars hammer:hammers hand:hands hat:hats helmet:helmets hill:hills
    horse:horses house:houses insect:insects island:islands jacket:jackets jungle:jungles
    kettle:kettles key:keys king:kings kite:kites kitten:kittens ladder:ladders
    lake:lakes lamp:lamps lantern:lanterns lemon:lemons lion:lions magnet:magnets
    map:maps market:markets meadow:meadows mirror:mirrors monkey:monkeys moon:moons
    mountain:mountains nail:nails needle:needles nest:nests night:nights ocean:oceans
    onion:onions orange:oranges owl:owls parrot:parrots pebble:pebbles pen:pens
    pencil:pencils piano:pianos picture:pictures pig:pigs pillow:pillows planet:planets
    plate:plates pocket:pockets pond:ponds puzzle:puzzles queen:queens rabbit:rabbits
    ring:rings river:rivers road:roads robot:robots rock:rocks rocket:rockets
    roof:roofs room:rooms rope:ropes rose:roses saddle:saddles sailor:sailors
    school:schools seed:seeds shirt:shirts shoe:shoes shop:shops shovel:shovels
    signal:signals sister:sisters snake:snakes sock:socks song:songs spider:spiders
    spoon:spoons star:stars stone:stones street:streets student:students table:tables
    teacher:teachers tent:tents ticket:tickets tiger:tigers tower:towers train:trains
    tree:trees truck:trucks tunnel:tunnels umbrella:umbrellas valley:valleys village:villages
    violin:violins wagon:wagons wall:walls whistle:whistles window:windows wing:wings
    word:words worm:worms yacht:yachts zebra:zebras address:addresses beach:beaches
    bench:benches boss:bosses box:boxes branch:branches brush:brushes bush:bushes
    church:churches class:classes coach:coaches dish:dishes dress:dresses fox:foxes
    glass:glasses hero:heroes inch:inches kiss:kisses lunch:lunches match:matches
    peach:peaches potato:potatoes sandwich:sandwiches tax:taxes tomato:tomatoes torch:torches
    watch:watches wish:wishes witch:witches army:armies baby:babies berry:berries
    body:bodies cherry:cherries city:cities country:countries daisy:daisies diary:diaries
    factory:factories family:families fly:flies hobby:hobbies lady:ladies library:libraries
    party:parties penny:pennies pony:ponies puppy:puppies story:stories calf:calves
    elf:elves half:halves knife:knives leaf:leaves life:lives loaf:loaves
    shelf:shelves thief:thieves wife:wives wolf:wolves child:children deer:deer
    foot:feet goose:geese man:men mouse:mice ox:oxen person:people
    sheep:sheep tooth:teeth woman:women jar:jars nut:nuts oven:ovens
    quilt:quilts unicorn:unicorns vase:vases xylophone:xylophones yak:yaks zoo:zoos
    igloo:igloos jewel:jewels napkin:napkins envelope:envelopes uncle:uncles
"""

PLURALS: tuple[tuple[str, str], ...] = tuple(
    (singular, plural)
    for singular, _, plural in (pair.partition(":") for pair in _PLURALS_TEXT.split())
)
"""The embedded (singular, plural) noun pairs used by ``plural``, ``first_letter`` and
``last_item``."""

_NOUNS: tuple[str, ...] = tuple(singular for singular, _ in PLURALS)


def _randbelow(rng: random.Random, n: int) -> int:
    """A uniform integer in ``[0, n)`` drawn through ``rng.random()`` only."""
    return min(int(rng.random() * n), n - 1)


def _shuffled(rng: random.Random, items: tuple[str, ...]) -> list[str]:
    """A Fisher-Yates shuffled copy of ``items`` drawn through ``rng.random()`` only."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = _randbelow(rng, i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def _unique(
    rng: random.Random, make: Callable[[random.Random], Example]
) -> list[Example]:
    """Draw ``N_POOL + N_TEST`` examples with distinct inputs."""
    seen: set[str] = set()
    examples: list[Example] = []
    while len(examples) < N_POOL + N_TEST:
        example = make(rng)
        if example.input not in seen:
            seen.add(example.input)
            examples.append(example)
    return examples


def _two_numbers(pick: Callable[[int, int], int]) -> Callable[[random.Random], list[Example]]:
    def generate(rng: random.Random) -> list[Example]:
        def make(rng: random.Random) -> Example:
            a = 1 + _randbelow(rng, 99)
            b = 1 + _randbelow(rng, 98)
            b = b + 1 if b >= a else b  # distinct from a, uniform over the other 98 values
            return Example(f"{a}, {b}", (str(pick(a, b)),))

        return _unique(rng, make)

    return generate


def _list_item(index: int) -> Callable[[random.Random], list[Example]]:
    def generate(rng: random.Random) -> list[Example]:
        def make(rng: random.Random) -> Example:
            size = 3 + _randbelow(rng, 3)
            items = _shuffled(rng, _NOUNS)[:size]
            return Example(", ".join(items), (items[index],))

        return _unique(rng, make)

    return generate


def _reverse_word(rng: random.Random) -> list[Example]:
    words = _shuffled(rng, _NOUNS)[: N_POOL + N_TEST]
    return [Example(word, (word[::-1],)) for word in words]


def _add_one(rng: random.Random) -> list[Example]:
    numbers = _shuffled(rng, tuple(str(n) for n in range(1, 1000)))[: N_POOL + N_TEST]
    return [Example(n, (str(int(n) + 1),)) for n in numbers]


def _first_letter(rng: random.Random) -> list[Example]:
    words = _shuffled(rng, _NOUNS)[: N_POOL + N_TEST]
    return [Example(word, (word[0],)) for word in words]


def _plural(rng: random.Random) -> list[Example]:
    plural_of = dict(PLURALS)
    words = _shuffled(rng, _NOUNS)[: N_POOL + N_TEST]
    return [Example(word, (plural_of[word],)) for word in words]


_GENERATORS: dict[str, tuple[int, Callable[[random.Random], list[Example]]]] = {
    "larger_number": (20230501, _two_numbers(max)),
    "last_item": (20230502, _list_item(-1)),
    "first_letter": (20230503, _first_letter),
    "plural": (20230504, _plural),
    "smaller_number": (20230505, _two_numbers(min)),
    "first_item": (20230506, _list_item(0)),
    "reverse_word": (20230507, _reverse_word),
    "add_one": (20230508, _add_one),
}

BUILTIN_TASKS: tuple[str, ...] = tuple(_GENERATORS)
"""Names of the built-in tasks."""


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in task."""
    return name in _GENERATORS


@cache
def load_builtin_task(name: str) -> Task:
    """Build a built-in task (cached: the result is immutable).

    Args:
        name: One of :data:`BUILTIN_TASKS`.

    Returns:
        The task: ``N_POOL`` pool examples, ``N_TEST`` test examples, metric ``exact_match``,
        source ``"builtin"``.

    Raises:
        TaskError: If ``name`` is not a built-in task.
    """
    if name not in _GENERATORS:
        valid = ", ".join(BUILTIN_TASKS)
        raise TaskError(f"{name!r} is not a built-in task (built-in tasks: {valid})")
    seed, generate = _GENERATORS[name]
    examples = generate(random.Random(seed))
    return Task(
        name=name,
        metric="exact_match",
        pool=tuple(examples[:N_POOL]),
        test=tuple(examples[N_POOL : N_POOL + N_TEST]),
        source="builtin",
    )
