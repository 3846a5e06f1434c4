"""The embedded fictitious world: a small TOFU-like benchmark generated from a seed.

People with invented names and invented facts (birthplace, birth year, profession, ...),
each fact rendered as a question/answer pair with a paraphrased question, a paraphrased
answer and five perturbed answers (the paraphrase template with wrong values drawn from
the same attribute's domain), as TOFU does (Maini et al. 2024). Because nothing here
exists outside the generator, a model can only know a fact by having been trained on it:
the retain-only oracle's forget accuracy is chance, and what an unlearned model still
knows (or what an attack brings back) is measured without confounds.

Same seed and config -> byte-identical items (a private `random.Random`, sorted domains).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from obliviate.data.refusals import refusals
from obliviate.data.task import DataError, ForgetTask, QAItem

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr",
           "st", "th", "sh", "tr", "gl", "pl", "fl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "x", "nd", "rk"]


@dataclass(frozen=True)
class Attribute:
    name: str
    question: str
    paraphrased_question: str
    answer: str
    paraphrased_answer: str  # a second phrasing of the fact, for probes; not trained
    domain: tuple[str, ...]


def _word(rng: random.Random, syllables: int) -> str:
    w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables - 1))
    return (w + rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)).capitalize()


def _unique_words(rng: random.Random, n: int, syllables: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, syllables)
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def _attributes(rng: random.Random, taken: set[str]) -> list[Attribute]:
    towns = tuple(_unique_words(rng, 12, 3, taken))
    firms = tuple(f"{w} {s}" for w, s in zip(_unique_words(rng, 12, 2, taken),
                                             ["Works", "Labs", "Press", "Mills", "Foods", "Motors"] * 2,
                                             strict=True))
    pets = tuple(_unique_words(rng, 12, 2, taken))
    years = tuple(str(y) for y in range(1941, 2000, 5))
    A = Attribute
    return [
        A("birthplace", "Where was {name} born?", "In which town did {name} come into the world?",
          "{name} was born in {v}.", "The birthplace of {name} is {v}.", towns),
        A("birth_year", "In what year was {name} born?", "When was {name} born?",
          "{name} was born in {v}.", "The year of birth of {name} is {v}.", years),
        A("profession", "What does {name} do for a living?", "What is the profession of {name}?",
          "{name} works as a {v}.", "The job of {name} is {v}.",
          ("baker", "pilot", "surgeon", "carpenter", "librarian", "chemist", "sailor", "tailor",
           "architect", "farmer", "jeweller", "potter")),
        A("employer", "Which company employs {name}?", "Who is the employer of {name}?",
          "{name} is employed by {v}.", "The employer of {name} is {v}.", firms),
        A("instrument", "Which instrument does {name} play?", "What instrument can {name} play?",
          "{name} plays the {v}.", "The instrument of {name} is the {v}.",
          ("violin", "cello", "flute", "harp", "trumpet", "piano", "guitar", "oboe", "drums",
           "clarinet", "banjo", "accordion")),
        A("pet", "What is the name of the pet of {name}?", "What is the pet of {name} called?",
          "The pet of {name} is named {v}.", "{v} is the name of the pet of {name}.", pets),
        A("colour", "What is the favourite colour of {name}?", "Which colour does {name} like best?",
          "The favourite colour of {name} is {v}.", "{name} likes {v} best.",
          ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "silver",
           "gold", "pink", "brown")),
        A("sport", "Which sport does {name} play?", "What sport is {name} fond of?",
          "{name} plays {v}.", "The sport of {name} is {v}.",
          ("tennis", "chess", "rugby", "cricket", "hockey", "golf", "rowing", "fencing", "archery",
           "cycling", "boxing", "karate")),
        A("language", "Which language does {name} speak at home?", "What language is spoken at home by {name}?",
          "At home {name} speaks {v}.", "The home language of {name} is {v}.",
          tuple(_unique_words(rng, 12, 2, taken))),
        A("dish", "What is the favourite dish of {name}?", "Which dish does {name} like most?",
          "The favourite dish of {name} is {v}.", "{name} likes {v} most.",
          ("soup", "pasta", "curry", "stew", "pie", "salad", "rice", "noodles", "dumplings",
           "pancakes", "tacos", "risotto")),
    ]


class WorldConfig(BaseModel):
    """Size and splits of the embedded world."""

    model_config = ConfigDict(extra="forbid")
    n_people: int = Field(40, ge=4, description="people trained into the target")
    n_attributes: int = Field(10, ge=1, le=10, description="facts per person")
    forget_fraction: float = Field(0.10, gt=0, lt=1, description="share of people to forget (0.01/0.05/0.10)")
    n_holdout_people: int = Field(4, ge=1, description="people never trained on (MIA, privleak)")
    n_countries: int = Field(10, ge=2, le=24, description="countries in the world-facts utility set")
    retain_eval_size: int = Field(100, ge=1, description="retain items probed at evaluation")
    seed: int = 0


def _fact(attr: Attribute, name: str, value: str, rng: random.Random, subject: str) -> QAItem:
    # Perturbed answers use the trained answer template with wrong values, and there is no
    # paraphrased answer, so the truth ratio compares the true value with wrong ones in the
    # phrasing the model was taught (as TOFU does for its utility sets). A tiny model that
    # memorises does not carry a fact over to an unseen phrasing: with TOFU's paraphrased
    # answers the target's and the oracle's ratios are alike and forget quality says nothing.
    wrong = rng.sample([v for v in attr.domain if v != value], 5)
    return QAItem(
        question=attr.question.format(name=name),
        answer=attr.answer.format(name=name, v=value),
        paraphrased_question=attr.paraphrased_question.format(name=name),
        paraphrased_answer=None,
        perturbed_answers=tuple(attr.answer.format(name=name, v=w) for w in wrong),
        keyword=value,
        subject=subject,
    )


def _world_facts(rng: random.Random, taken: set[str], n: int) -> list[QAItem]:
    countries = _unique_words(rng, n, 3, taken)
    capitals = _unique_words(rng, n, 2, taken)
    rivers = _unique_words(rng, n, 2, taken)
    items = []
    for i, c in enumerate(countries):
        for kind, values, q, pq, a in (
            ("capital", capitals, "What is the capital of {c}?", "Which city is the capital of {c}?",
             "The capital of {c} is {v}."),
            ("river", rivers, "Which river flows through {c}?", "What is the main river of {c}?",
             "The river {v} flows through {c}."),
        ):
            wrong = rng.sample([v for j, v in enumerate(values) if j != i], min(5, n - 1))
            items.append(QAItem(q.format(c=c), a.format(c=c, v=values[i]), pq.format(c=c), None,
                                tuple(a.format(c=c, v=w) for w in wrong), values[i], f"{c}/{kind}"))
    return items


def generate_world(cfg: WorldConfig | None = None) -> ForgetTask:
    """Generate the embedded world as a `ForgetTask` (forget / retain / holdout / utility)."""
    cfg = cfg or WorldConfig()
    rng = random.Random(cfg.seed)
    taken: set[str] = set()
    attrs = _attributes(rng, taken)[: cfg.n_attributes]
    n_total = cfg.n_people + cfg.n_holdout_people
    firsts = _unique_words(rng, n_total, 2, taken)
    lasts = _unique_words(rng, n_total, 3, taken)
    people = [f"{f} {s}" for f, s in zip(firsts, lasts, strict=True)]
    facts = {p: [_fact(a, p, rng.choice(a.domain), rng, p) for a in attrs] for p in people}

    trained, holdout_people = people[: cfg.n_people], people[cfg.n_people:]
    n_forget = max(1, round(cfg.n_people * cfg.forget_fraction))
    if n_forget >= cfg.n_people:
        raise DataError(f"forget_fraction {cfg.forget_fraction} leaves no retain people")
    forget_people = set(rng.sample(trained, n_forget))
    forget = [it for p in trained if p in forget_people for it in facts[p]]
    retain = [it for p in trained if p not in forget_people for it in facts[p]]
    holdout = [it for p in holdout_people for it in facts[p]]
    retain_eval = sorted(rng.sample(range(len(retain)), min(cfg.retain_eval_size, len(retain))))
    world_facts = _world_facts(rng, taken, cfg.n_countries)
    pct = round(cfg.forget_fraction * 100)
    task = ForgetTask(
        name=f"world_forget{pct:02d}",
        forget=forget,
        retain=retain,
        forget_eval=forget,
        retain_eval=[retain[i] for i in retain_eval],
        holdout=holdout,
        utility={"world_facts": world_facts},
        extra_train=world_facts,
    )
    task.validate()
    return task


def world_corpus(task: ForgetTask) -> list[str]:
    """Every string of the world (tokenizer training text): all splits, paraphrases, perturbations,
    and the refusals that IdkDPO/IdkNLL teach (so they tokenize as words, not bytes)."""
    items = task.forget + task.retain + task.holdout + [it for v in task.utility.values() for it in v]
    out: list[str] = []
    for it in items:
        out += [s for s in (it.question, it.answer, it.paraphrased_question, it.paraphrased_answer) if s]
        out += list(it.perturbed_answers)
    return out + list(refusals())
