"""examples/bible/bible_text.py on hand-written verse strings in the modules' markup (no download).

The sentences are invented; only the markup copies what mod2imp exports from the KJV, WEB and RV1909 modules.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "bible"))
import bible_text as bt  # noqa: E402


def test_strongs_markup_is_dropped_and_its_numbers_collected():
    raw = ('In the <w lemma="strong:H0001">first</w> <w lemma="strong:H0020 strong:H0300">lamp</w> '
           '<transChange type="added">was</transChange> lit.')
    assert bt.clean_verse(raw) == "In the first lamp was lit."
    assert bt.strongs_numbers(raw) == {"H1", "H20", "H300"}
    # RV1909 lists several numbers in one lemma without repeating "strong:"
    assert bt.strongs_numbers('<w lemma="strong:G0005 G0006">la lámpara</w>') == {"G5", "G6"}


def test_footnotes_and_cross_references_are_dropped():
    raw = ('The <w lemma="strong:H0002">lamp</w> burned.<note placement="foot"><reference type="annotateRef">1.2 '
           '</reference>burned: Heb. <catchWord>shone</catchWord></note>  <div eID="gen3" type="x-p"/>')
    assert bt.clean_verse(raw) == "The lamp burned."
    raw = ('Count the jars,<note type="crossReference"><reference subType="x-origin" type="annotateRef">2:4 '
           '</reference><reference>Book 9:9</reference></note> <w lemma="strong:H0003">all</w> of them.')
    assert bt.clean_verse(raw) == "Count the jars, all of them."
    assert bt.strongs_numbers('<w lemma="strong:H0004">x</w><note>y <w lemma="strong:H0005">z</w></note>') == {"H4"}


def test_web_note_between_words_leaves_a_space_but_none_before_punctuation():
    raw = ('<w lemma="strong:H0001">Anna</w><note placement="foot"><reference type="annotateRef">1:1 </reference>'
           '“Anna” means “grace”.</note><w lemma="strong:H0002">baked</w> bread<note placement="foot">or, '
           'cakes</note>. She said,<note placement="foot">a note</note>“Eat.”')
    assert bt.clean_verse(raw) == "Anna baked bread. She said, “Eat.”"


def test_headings_are_dropped_but_canonical_psalm_titles_kept():
    raw = ('<div type="x-milestone" subType="x-preverse" sID="pv9"/><title canonical="true" type="psalm">A song '
           'for the road.</title> <lg sID="gen1"/> <l level="1" sID="gen2"/><div type="x-milestone" '
           'subType="x-preverse" eID="pv9"/>Sing on the way! <l eID="gen2" level="1"/>')
    assert bt.clean_verse(raw) == "A song for the road. Sing on the way!"
    raw = ('Farewell. <chapter eID="Ep.3"/> <title>The letter was <transChange type="added">sent</transChange> '
           'by boat.</title>')
    assert bt.clean_verse(raw) == "Farewell."
    raw = '<title><foreign>א ALEPH.</foreign></title> <lg sID="g"/>Happy are they.'
    assert bt.clean_verse(raw) == "Happy are they."
    # the WEB tags acrostic letters as psalm titles; RV1909 prints them untagged before the first word
    assert bt.clean_verse('<title canonical="true" type="psalm">ALEPH</title> Happy are they.') == "Happy are they."
    assert bt.clean_verse('BETH ¿<w lemma="strong:H0001">Cómo</w> andará?') == "¿Cómo andará?"
    assert bt.clean_verse('<speaker>Friend</speaker> <lg sID="g1"/>Come along.') == "Come along."


def test_red_letter_and_paragraph_marks_are_dropped():
    raw = ('<w lemma="strong:G0001">He</w> said, <q marker="" who="Jesus">“<w lemma="strong:G0002">Walk</w> on.”'
           '</q><w lemma="strong:G0003">Then</w> they walked.')
    assert bt.clean_verse(raw) == "He said, “Walk on.” Then they walked."
    raw = ('<div type="x-milestone" subType="x-preverse" sID="pv1"/><div sID="gen4" type="x-p"/> <div '
           'type="x-milestone" subType="x-preverse" eID="pv1"/>¶ And the \\nd <w lemma="strong:H0001">KEEPER</w>'
           '</divineName> slept.<lb type="x-p"/>Then dawn.')
    assert bt.clean_verse(raw) == "And the KEEPER slept. Then dawn."


def test_rv1909_added_words_are_separated_unless_enclitic():
    raw = ('<w lemma="strong:H0001">Allí</w><transChange type="added">también</transChange><w lemma="strong:H0002">'
           'cantaron</w>, <w lemma="strong:H0003">oyéndo</w><transChange type="added">lo</transChange> '
           '<w lemma="strong:H0004">todos</w>; <w lemma="strong:H0005">no</w><transChange type="added">lo</transChange>'
           '<w lemma="strong:H0006">vieron</w>.')
    assert bt.clean_verse(raw) == "Allí también cantaron, oyéndolo todos; no lo vieron."


def test_text_after_the_book_end_is_cut():
    raw = ('<w lemma="strong:G0001">Peace</w> to all. Amen.  <chapter eID="Rev.22"/><div eID="gen1" type="x-p"/> '
           '<div canonical="true" eID="gen0" osisID="Rev" type="book"/> <div sID="gen2" type="glossary"/> '
           '<title level="1" type="main">Glossary</title> <list> <item type="x-indent-1"><seg type="keyword">Amen'
           '</seg> Amen means so be it.</item> <d')
    assert bt.clean_verse(raw) == "Peace to all. Amen."
    assert bt.clean_verse('The end. <d') == "The end."  # an entry cut inside a tag


def _entry(ref, raw):
    return f"$$${ref}\n{raw}\n"


def _module(verses, header=True):
    text = "$$$[ Module Heading ]\n\n"
    if header:  # verse 0: book and chapter introductions
        text += _entry("Book 0:0", '<div osisID="Bk" sID="b1" type="book"/> <title type="main">Book</title>')
    for (chapter, verse), raw in verses.items():
        if header and verse == 1:
            text += _entry(f"Book {chapter}:0", f'<chapter n="{chapter}" sID="Bk.{chapter}"/>')
        text += _entry(f"Book {chapter}:{verse}", raw)
    return text


def _tagged(numbers, lang):
    word = {"en": "lamp{}", "es": "lámpara{}"}[lang]
    return " ".join(f'<w lemma="strong:H{n:04d}">{word.format(n)}</w>' for n in numbers) + "."


def test_shifted_rv1909_chapter_is_dropped_with_its_neighbours_and_verse_0_is_skipped():
    # Three chapters of four verses; verse (c, v) holds Strong's numbers 100c+10v+{1,2,3}. RV1909 numbers
    # chapter 2 like the Hebrew text: its 1:4 is empty, its 2:1 holds the KJV's 1:4, 2:2 the KJV's 2:1, ...,
    # and 2:4 holds both 2:3 and 2:4 (as in RV1909's Numbers 12-13).
    refs = [(c, v) for c in (1, 2, 3) for v in (1, 2, 3, 4)]
    nums = {r: [100 * r[0] + 10 * r[1] + k for k in (1, 2, 3)] for r in refs}
    rv_nums = dict(nums)
    rv_nums.update({(1, 4): [], (2, 1): nums[1, 4], (2, 2): nums[2, 1], (2, 3): nums[2, 2],
                    (2, 4): nums[2, 3] + nums[2, 4]})
    kjv = _module({r: _tagged(nums[r], "en") for r in refs})
    web = _module({r: _tagged(nums[r], "en").replace("lamp", "Lamp") for r in refs})
    rv = _module({r: _tagged(rv_nums[r], "es") if rv_nums[r] else "" for r in refs})
    raw = {"kjv": bt.parse_imp(kjv), "web": bt.parse_imp(web), "rv": bt.parse_imp(rv)}
    assert ("Book", 0, 0) in raw["kjv"] and ("Book", 2, 0) in raw["kjv"]

    kept, text, counts = bt.align(raw)
    assert kept == [("Book", 1, 1), ("Book", 1, 2), ("Book", 3, 1), ("Book", 3, 2), ("Book", 3, 3), ("Book", 3, 4)]
    assert counts["verses_kjv_versification"] == 12  # no verse 0
    assert counts["empty_somewhere"] == 1
    assert counts["shifted_kjv_vs_rv"] == 4  # 1:4, 2:1, 2:2, 2:3; 2:4 matches half and counts as aligned
    assert counts["shifted_chapters"] == {"Book 2": 3, "Book 1": 1}
    assert counts["shifted_kjv_vs_web"] == 0
    assert text["rv"][("Book", 2, 1)] == "lámpara141 lámpara142 lámpara143."


def test_chapter_split_is_shared_by_tasks_and_train_drops_held_out_duplicates():
    pairs = {(b, c, v): (f"src {b}{c}{v}", f"tgt {b}{c}{v}") for b in "AB" for c in (1, 2, 3) for v in (1, 2)}
    pairs["A", 3, 1] = ("Same words.", "tgt A31")
    pairs["B", 2, 1] = ("same WORDS", "tgt B21")  # identical to a test source up to case and punctuation
    pairs["B", 3, 2] = ("src B32", "tgt A32")  # a valid target identical to a test target
    # the other task holds fewer verses per chapter, so more chapters are needed to reach 2 test verses
    other = {r: p for r, p in pairs.items() if r[2] == 1}
    where = bt.split_chapters({"t1": pairs, "t2": other}, seed=1, test=2, valid=1)
    assert where == {("A", 3): "test", ("B", 1): "test", ("B", 3): "valid",
                     ("A", 1): "train", ("B", 2): "train", ("A", 2): "train"}
    splits, removed = bt.assign(pairs, where)
    assert splits["test"] == [("A", 3, 1), ("A", 3, 2), ("B", 1, 1), ("B", 1, 2)]
    assert splits["valid"] == [("B", 3, 1)]
    assert ("B", 2, 1) not in splits["train"] and len(splits["train"]) == 5
    assert removed == {"test": 0, "valid": 1, "train": 1}
