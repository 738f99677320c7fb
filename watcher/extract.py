"""What an advocate needs at a glance, from a matched item: how many people, where, when.

Works on text already normalised by `rules.normalize` (NFKC, case-folded, dashes folded), so
it runs only for items that matched a rule, on the string the matcher already built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import ahocorasick

# --------------------------------------------------------------------------- places

#: Canonical name → spellings (English, Korean, Chinese simplified and traditional, Japanese).
#: Places on the China–North Korea border and the sites where escapees are held or handed over.
GAZETTEER: dict[str, tuple[str, ...]] = {
    "Dandong": ("dandong", "단둥", "丹东", "丹東"),
    "Tumen River": ("tumen river", "두만강", "图们江", "圖們江", "豆満江", "図們江"),
    "Tumen": ("tumen", "투먼", "도문", "图们", "圖們", "図們"),
    "Hunchun": ("hunchun", "훈춘", "珲春", "琿春"),
    "Yanji": ("yanji", "옌지", "연길", "延吉"),
    "Yanbian": ("yanbian", "옌볜", "옌벤", "연변", "延边", "延邊", "延辺"),
    "Shenyang": ("shenyang", "선양", "심양", "沈阳", "瀋陽", "沈陽"),
    "Changbai": ("changbai", "창바이", "장백", "长白", "長白"),
    "Jilin": ("jilin", "지린", "길림", "吉林"),
    "Liaoning": ("liaoning", "랴오닝", "요녕", "辽宁", "遼寧"),
    "Sinuiju": ("sinuiju", "신의주", "新义州", "新義州"),
    "Hyesan": ("hyesan", "혜산", "惠山", "恵山"),
    "Yalu River": ("yalu", "압록강", "鸭绿江", "鴨綠江", "鴨緑江"),
    "Onsong": ("onsong", "온성", "稳城", "穩城", "穏城"),
    "Musan": ("musan", "茂山"),
    "Namyang": ("namyang",),
    "Tonghua": ("tonghua", "퉁화", "通化"),
    "Changchun": ("changchun", "창춘", "长春", "長春"),
    "Harbin": ("harbin", "하얼빈", "哈尔滨", "哈爾濱", "ハルビン"),
    "Anshan": ("anshan", "鞍山"),
    "Dalian": ("dalian", "다롄", "大连", "大連"),
    "Qingdao": ("qingdao", "칭다오", "青岛", "青島"),
    "Yantai": ("yantai", "옌타이", "烟台", "煙台"),
    "Kunming": ("kunming", "쿤밍", "昆明"),
    "Ningbo": ("ningbo", "닝보", "宁波", "寧波"),
    "Vladivostok": ("vladivostok", "블라디보스토크", "符拉迪沃斯托克", "ウラジオストク"),
    # Transit countries: where escapees are caught on the way to a third country.
    "Russia": ("russia", "러시아", "俄罗斯", "俄羅斯", "ロシア"),
    "Mongolia": ("mongolia", "몽골", "蒙古", "モンゴル"),
    "Laos": ("laos", "라오스", "老挝", "寮國", "ラオス"),
    "Vietnam": ("vietnam", "viet nam", "베트남", "越南", "ベトナム"),
    "Cambodia": ("cambodia", "캄보디아", "柬埔寨", "カンボジア"),
    "Thailand": ("thailand", "태국", "泰国", "泰國", "タイ国"),
    "Myanmar": ("myanmar", "미얀마", "缅甸", "緬甸", "ミャンマー"),
    "Bangkok": ("bangkok", "방콕", "曼谷", "バンコク"),
}


#: Provinces, prefectures and countries: a shared one says less about the event than a town.
REGIONS = frozenset(
    {
        "Jilin",
        "Liaoning",
        "Yanbian",
        "Russia",
        "Mongolia",
        "Laos",
        "Vietnam",
        "Cambodia",
        "Thailand",
        "Myanmar",
    }
)
#: Every word of every Latin spelling, lower case (not "rare names": places are their own signal).
PLACE_WORDS = frozenset(
    word for spellings in GAZETTEER.values() for s in spellings if s.isascii() for word in s.split()
)


def _build(names: dict[str, tuple[str, ...]]) -> ahocorasick.Automaton:
    """One automaton over every spelling: each hit gives (length, canonical name, latin)."""
    automaton = ahocorasick.Automaton()
    for canonical, spellings in names.items():
        for spelling in spellings:
            automaton.add_word(spelling, (len(spelling), canonical, spelling.isascii()))
    automaton.make_automaton()
    return automaton


_PLACES = _build(GAZETTEER)
_WORD = re.compile(r"[0-9a-z\u00c0-\u024f]")


def places(norm: str) -> tuple[str, ...]:
    """Canonical names in order of first mention; a longer name hides the one inside it
    (Tumen River is not also Tumen; 图们江 is not also 图们)."""
    spans: list[tuple[int, int, str]] = []
    for end, (length, canonical, latin) in _PLACES.iter(norm):
        start = end - length + 1
        if latin:
            if start > 0 and _WORD.match(norm[start - 1]):
                continue
            if end + 1 < len(norm) and _WORD.match(norm[end + 1]):
                continue
        spans.append((start, end, canonical))
    kept = sorted(
        (start, end, name)
        for start, end, name in spans
        if not any(s2 <= start and end <= e2 and e2 - s2 > end - start for s2, e2, _ in spans)
    )
    return tuple(dict.fromkeys(c for _, _, c in kept))


# --------------------------------------------------------------------------- who

#: Bodies and people whose names are spelled differently in each language, canonical name →
#: spellings (English, Korean, Chinese simplified and traditional, Japanese). Two reports naming
#: the same one are likely about the same act, across languages.
ENTITIES: dict[str, tuple[str, ...]] = {
    "UN Committee against Torture": (
        "committee against torture",
        "고문방지위",
        "禁止酷刑委员会",
        "禁止酷刑委員會",
        "拷問禁止委",
    ),
    "UN Universal Periodic Review": (
        "universal periodic review",
        "보편적정례인권검토",
        "보편적 정례 인권 검토",
        "普遍定期审议",
        "普遍定期審議",
        "普遍的定期審査",
    ),
    "UN Third Committee": ("third committee", "제3위원회", "제3 위원회", "第三委员会", "第3委員会"),
    "UN Human Rights Council": (
        "human rights council",
        "인권이사회",
        "人权理事会",
        "人權理事會",
        "人権理事会",
    ),
    "UN Special Rapporteur": (
        "special rapporteur",
        "특별보고관",
        "特别报告员",
        "特別報告員",
        "特別報告者",
    ),
    "UNHCR": (
        "unhcr",
        "un refugee agency",
        "u.n. refugee agency",
        "high commissioner for refugees",
        "유엔난민기구",
        "난민고등판무관",
        "难民署",
        "難民署",
        "难民事务高级专员",
        "難民高等弁務官",
    ),
    "OHCHR": (
        "ohchr",
        "high commissioner for human rights",
        "un human rights office",
        "인권최고대표",
        "유엔인권사무소",
        "유엔 인권사무소",
        "人权高专",
        "人權高專",
        "人権高等弁務官",
    ),
    "UN Commission of Inquiry": (
        "commission of inquiry",
        "북한인권조사위원회",
        "调查委员会",
        "調査委員会",
    ),
    "CEDAW": ("cedaw", "여성차별철폐위", "消除对妇女歧视委员会", "女性差別撤廃委"),
    "Human Rights Watch": (
        "human rights watch",
        "휴먼라이츠워치",
        "人权观察",
        "人權觀察",
        "ヒューマン・ライツ・ウォッチ",
    ),
    "Amnesty International": ("amnesty", "앰네스티", "国际特赦", "國際特赦", "アムネスティ"),
    # China's foreign ministry: spokespeople and ministers
    "Lin Jian": ("lin jian", "린젠", "林剑", "林劍", "林剣"),
    "Wang Wenbin": ("wang wenbin", "왕원빈", "汪文斌"),
    "Mao Ning": ("mao ning", "마오닝", "毛宁", "毛寧"),
    "Hua Chunying": ("hua chunying", "화춘잉", "华春莹", "華春瑩"),
    "Zhao Lijian": ("zhao lijian", "자오리젠", "赵立坚", "趙立堅"),
    "Geng Shuang": ("geng shuang", "겅솽", "耿爽"),
    "Lu Kang": ("lu kang", "루캉", "陆慷", "陸慷"),
    "Hong Lei": ("hong lei", "훙레이", "洪磊"),
    "Qin Gang": ("qin gang", "친강", "秦刚", "秦剛"),
    "Liu Jianchao": ("liu jianchao", "류젠차오", "刘建超", "劉建超"),
    "Kong Quan": ("kong quan", "쿵취안", "孔泉"),
    "Zhang Qiyue": ("zhang qiyue", "장치웨", "章启月", "章啟月"),
    "Jiang Yu": ("jiang yu", "장위", "姜瑜"),
    "Wang Yi": ("wang yi", "왕이", "王毅"),
    "Xi Jinping": ("xi jinping", "시진핑", "习近平", "習近平"),
    "Antonio Guterres": ("guterres", "구테흐스", "구테레스", "古特雷斯", "グテレス"),
    "Tomas Ojea Quintana": ("quintana", "킨타나", "金塔纳", "金塔納", "キンタナ"),
    "Elizabeth Salmon": ("salmon", "살몬", "萨尔蒙", "サルモン"),
}


_ENTITIES = _build(ENTITIES)


def entities(norm: str) -> tuple[str, ...]:
    """Canonical names of the bodies and officials a text names, in order of first mention."""
    found: list[tuple[int, str]] = []
    for end, (length, canonical, latin) in _ENTITIES.iter(norm):
        start = end - length + 1
        if latin and (
            (start > 0 and _WORD.match(norm[start - 1]))
            or (end + 1 < len(norm) and _WORD.match(norm[end + 1]))
        ):
            continue
        found.append((start, canonical))
    return tuple(dict.fromkeys(c for _, c in sorted(found)))


# --------------------------------------------------------------------------- people

_EN_UNITS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_EN_NUMBER = (
    r"(?P<n>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?: (?:thousand|hundred))?|"
    + "|".join(sorted(_EN_UNITS, key=len, reverse=True))
    + ")"
)
_EN_PEOPLE = (
    r"(?:north koreans?|defectors?|escapees?|refugees?|people|persons|women|men|children|"
    r"girls|boys|detainees|individuals|migrants|family members|members|asylum seekers|"
    r"nationals|citizens|residents|workers|others)"
)
_EN = re.compile(r"(?<![\w.,])" + _EN_NUMBER + r" (?:[a-z'\-]+ ){0,3}?" + _EN_PEOPLE + r"\b")
_EN_FAMILY = re.compile(r"\bfamily of (?P<n>\w+)\b")
_KO = re.compile(
    r"(?<![\d.,])(?P<n>\d[\d,]*)\s?(?P<mult>천|백|만)?\s?여?\s?(?:명|인)(?!\w*(?:년|월))"
)
_ZH_NUM = "零〇一二两三四五六七八九十百千万"
_ZH = re.compile(r"(?:逾|超过|约|近)?(?P<n>\d[\d,]*|[" + _ZH_NUM + r"]+)\s?(?:多|余)?\s?(?:名|人)")


def _to_int(word: str) -> int | None:
    word = word.replace(",", "").strip()
    if word.isdigit():
        return int(word)
    parts = word.split(" ")
    if len(parts) == 2 and parts[0].replace(".", "").isdigit():
        scale = {"thousand": 1000, "hundred": 100}.get(parts[1])
        if scale:
            return int(float(parts[0]) * scale)
    try:
        return int(float(word))
    except ValueError:
        pass
    return _EN_UNITS.get(word)


def _zh_int(text: str) -> int | None:
    """Chinese numerals up to the ten thousands: 九 → 9, 六百 → 600, 两千 → 2000, 百 → 100."""
    if text.replace(",", "").isdigit():
        return int(text.replace(",", ""))
    digits = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
    units = {"十": 10, "百": 100, "千": 1000, "万": 10000}
    total, current = 0, 0
    for char in text:
        if char in digits:
            current = digits[char]
        elif char in units:
            total += (current or 1) * units[char]
            current = 0
        else:
            return None
    return total + current or None


def people(norm: str, lang: str | None = None) -> int | None:
    """The first stated number of people, or None when only vague words are used.

    `lang` only saves time: the patterns of other scripts are skipped when it is given."""
    found: list[tuple[int, int]] = []
    latin = lang not in ("ko", "zh", "ja")
    if latin or lang is None:
        for m in _EN.finditer(norm):
            n = _to_int(m.group("n"))
            if n and not (1900 <= n <= 2100 and "," not in m.group("n")):
                found.append((m.start(), n))
        if "family of" in norm:
            for m in _EN_FAMILY.finditer(norm):
                n = _to_int(m.group("n"))
                if n:
                    found.append((m.start(), n))
    if lang in ("ko", None) and ("명" in norm or "인" in norm):
        for m in _KO.finditer(norm):
            n = _to_int(m.group("n"))
            if n:
                n *= {"천": 1000, "백": 100, "만": 10000}.get(m.group("mult") or "", 1)
                found.append((m.start(), n))
    if lang in ("zh", "ja", None) and ("名" in norm or "人" in norm):
        for m in _ZH.finditer(norm):
            n = _zh_int(m.group("n"))
            if n:
                found.append((m.start(), n))
    if not found:
        return None
    return min(found)[1]


# --------------------------------------------------------------------------- dates

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for m in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_EN_DATE = re.compile(
    r"\b(?P<m>" + _MONTH + r")\.? (?P<d>\d{1,2})(?:st|nd|rd|th)?\b(?:,? (?P<y>(?:19|20)\d\d))?"
)
_EN_DATE_DMY = re.compile(r"\b(?P<d>\d{1,2}) (?P<m>" + _MONTH + r")\b\.?(?: (?P<y>(?:19|20)\d\d))?")
_HAS_DIGIT = re.compile(r"\d")
_CJK_DATE = re.compile(
    r"(?:(?P<y>(?:19|20)\d\d)\s?[년年]\s?)?(?P<m>\d{1,2})\s?[월月]\s?(?P<d>\d{1,2})\s?[일日]"
)


def dates(norm: str, published_year: int | None = None) -> tuple[str, ...]:
    """Dates the text states, as ISO dates (`--MM-DD` when no year is known)."""
    out: list[tuple[int, str]] = []
    patterns = [_EN_DATE, _EN_DATE_DMY] if _HAS_DIGIT.search(norm) else []
    if "월" in norm or "月" in norm:
        patterns.append(_CJK_DATE)
    for pattern in patterns:
        for m in pattern.finditer(norm):
            month = m.group("m")
            month_number = _MONTHS[month] if month in _MONTHS else int(month)
            day = int(m.group("d"))
            year = int(m.group("y")) if m.group("y") else published_year
            try:
                date(year or 2000, month_number, day)  # 2000: a leap year, for 29 February
            except ValueError:
                continue
            text = (
                f"{year:04d}-{month_number:02d}-{day:02d}"
                if year
                else (f"--{month_number:02d}-{day:02d}")
            )
            out.append((m.start(), text))
    return tuple(dict.fromkeys(t for _, t in sorted(out)))


# --------------------------------------------------------------------------- all of it


@dataclass(frozen=True, slots=True)
class Extracted:
    people: int | None = None
    places: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"people": self.people, "places": list(self.places), "dates": list(self.dates)}


def extract(norm: str, *, lang: str | None = None, published_year: int | None = None) -> Extracted:
    return Extracted(
        people=people(norm, lang), places=places(norm), dates=dates(norm, published_year)
    )
