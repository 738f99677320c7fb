"""What an advocate needs at a glance, from a matched item: how many people, where, when.

Works on text already normalised by `rules.normalize` (NFKC, case-folded, dashes folded), so
it runs only for items that matched a rule, on the string the matcher already built.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

import ahocorasick_rs

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


#: An automaton over names' spellings, and by the spelling's index (canonical name, Latin).
_Names = tuple[ahocorasick_rs.AhoCorasick, tuple[tuple[str, bool], ...]]


def _build(names: dict[str, tuple[str, ...]]) -> _Names:
    """One automaton over every spelling (the last canonical name of one spelt twice)."""
    spellings = {spelling: canonical for canonical, all_ in names.items() for spelling in all_}
    ordered = sorted(spellings)
    finder = ahocorasick_rs.AhoCorasick(
        ordered, store_patterns=False, implementation=ahocorasick_rs.Implementation.DFA
    )
    return finder, tuple((spellings[s], s.isascii()) for s in ordered)


def _hits(names: _Names, norm: str) -> list[tuple[int, int, str]]:
    """(start, end, canonical name) of every spelling found, a Latin one only as whole words:
    in order of their end, the longest first at one end."""
    finder, values = names
    found = []
    words = WORD_CHARS
    after = len(norm)
    for index, start, stop in finder.find_matches_as_indexes(norm, overlapping=True):
        canonical, latin = values[index]
        if latin and (
            (start > 0 and norm[start - 1] in words) or (stop < after and norm[stop] in words)
        ):
            continue
        found.append((start, stop - 1, canonical))
    return found


_PLACES = _build(GAZETTEER)
#: Characters that continue a Latin-script word (text is case-folded: lowercase only); the
#: rules' word boundaries use them too.
WORD_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyz0123456789" + "".join(chr(c) for c in range(0xC0, 0x250))
)


#: Where a report was filed, not where its event happened. A wire dateline opens the text or
#: the title: "bangkok (reuters)", "dandong, china (reuters)", "shenyang, china, nov. 18 (ap)";
#: "seoul, dec. 30 (yonhap)".
_WIRE_DATELINE = re.compile(
    r"(?:, [a-z]+(?: [a-z]+)?)?(?:,? [a-z]{3,9}\.? \d{1,2})?,? \((?:reuters|ap|afp|upi|"
    r"yonhap|xinhua|kyodo|dpa|efe|rfa|voa|nk news|daily nk|cnn|bbc)\)"
)
#: A Korean byline, wherever it stands ("(단둥=연합뉴스)", "단둥=연합뉴스" under a photo).
_BYLINE_KO = re.compile(r"\s?=\s?[가-힣a-z0-9]*(?:뉴스|news|일보|신문|통신)")
#: An agency after a city in 【】 ("【瀋陽聯合ニュース】").
_AGENCY_CJK = re.compile(r"(?:聯合|联合|共同|時事|时事)(?:ニュース|通信|新闻|社)(?!区)")
#: A Chinese agency's dateline before the city ("新华社丹东3月1日电").
_DATELINE_BEFORE = re.compile(r"(?:新华社|新華社|中新社|中新網|中新网)\s?$")
#: Between title and text in the text the rules read (`rules` joins them with it; the
#: normalising leaves it as it is), so that extraction knows what the headline says.
TITLE_END = " \u2016 "


def _dateline(norm: str, start: int, end: int) -> bool:
    """Is the place at [start, end] the city a report was filed from (a dateline)?"""
    after = end + 1
    if _BYLINE_KO.match(norm, after, after + 30):
        return True
    if norm[start - 1 : start] == "【" and _AGENCY_CJK.match(norm, after, after + 12):
        return True
    if _DATELINE_BEFORE.search(norm, max(0, start - 4), start):
        return True
    opens = start == 0 or norm.startswith(TITLE_END, start - len(TITLE_END))
    return opens and bool(_WIRE_DATELINE.match(norm, after, after + 48))


def places(norm: str) -> tuple[str, ...]:
    """Canonical names in order of first mention; a longer name hides the one inside it
    (Tumen River is not also Tumen; 图们江 is not also 图们). A city named only in a dateline
    ("BANGKOK (Reuters) -", "단둥=연합뉴스", "【瀋陽聯合ニュース】") is where the report was
    filed, not where its event happened: that mention does not count (`_dateline`)."""
    spans = _hits(_PLACES, norm)
    kept = sorted(
        (start, end, name)
        for start, end, name in spans
        if not any(s2 <= start and end <= e2 and e2 - s2 > end - start for s2, e2, _ in spans)
        and not _dateline(norm, start, end)
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
    found = [(start, canonical) for start, _, canonical in _hits(_ENTITIES, norm)]
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
    r"nationals|citizens|residents|workers|fishermen|orphans|others)"
)


def _starting(first: str, pattern: str) -> re.Pattern[str]:
    """`pattern`, tried only where one of the characters `first` (a class's contents) stands:
    each must list every character a match of `pattern` can begin with. A class fails at
    most positions several times faster than an alternation or a lookbehind does."""
    return re.compile(f"(?=[{first}])(?:{pattern})")


_EN = _starting(
    r"\d" + "".join(sorted({word[0] for word in _EN_UNITS})),
    # not an age: "a 26-year-old defector" (hyphens are folded to spaces) is one person
    r"(?<![\w.,])" + _EN_NUMBER + r"(?! (?:years?|months?) old\b)"
    r" (?:[a-z'\-]+ ){0,3}?" + _EN_PEOPLE + r"\b",
)
_EN_FAMILY = re.compile(r"\bfamily of (?P<n>\w+)\b")
#: A count a report gives as where a number went ("detained defectors rise to 60", "the number
#: held has risen from 20 to about 60", "the detainees now number 60"): the people are named
#: before the number, in the same sentence (`_RISEN_SUBJECT`), so `_EN`, which wants them
#: after it, misses it. Not a price, a rate, a sum, a share or a measure: the number may not
#: be followed by a unit, nor cut short to dodge one ("8,000 won" is not 8).
_EN_RISEN = _starting(
    "rcigjsnt",  # the first letters of the verbs below
    r"\b(?:(?:rises?|rose|risen|rising|climbs?|climbed|climbing|increased?|increases|grows?|"
    r"grew|grown|jumps?|jumped|swell(?:s|ed)?|reach(?:es|ed)?) (?:from [\d,]+ )?to|"
    r"(?:now )?numbers?|totall?(?:s|ed|ing)?) "
    r"(?:about |around |some |roughly |at least |more than |over |nearly |almost |up to )?"
    + _EN_NUMBER
    + r"(?![\w.,]?\d)(?!\w)(?! ?[%°$])(?! ?(?:percent|per ?cent|years?|months?|weeks?|days?|"
    r"hours?|minutes?|km|kilomet(?:er|re)s?|miles?|met(?:er|re)s?|times|tons?|tonnes?|kg|"
    r"degrees?|million|billion|trillion|thousand|hundred|dollars?|usd|won|yuan|rmb|yen|euros?|"
    r"points?|votes?|seats?|cases?|launch(?:es)?)\b)",
)
#: Who a "rise to 60" counts: people (escapees, detainees...) or those held, named before it.
_EN_PEOPLE_WORD = re.compile(r"\b" + _EN_PEOPLE + r"\b|\bdetained\b|\bheld\b|\barrested\b")
#: How far before "rise to 60" its subject is looked for (in the same sentence).
_RISEN_SUBJECT = 160
#: What a number that rose counts when it stands after the people in the subject: "defectors
#: say the price of corn climbed to 3,500" counts corn's price, not defectors.
_MEASURE = re.compile(
    r"\b(?:prices?|rates?|costs?|fees?|bribes?|values?|wages?|salar(?:y|ies)|temperatures?|"
    r"exchange|shares?|percentages?|levels?|amounts?|sums?|budgets?|exports?|imports?|trade|"
    r"launch(?:es)?|tests?|cases?|votes?|index|gdp|output)\b"
)
#: ...or the sentence says whose number it is: "the number of North Korean defectors detained
#: by Chinese police in Jilin has risen to 45".
_NUMBER_OF = re.compile(
    r"\b(?:number|total|toll|count) of (?:[a-z'\-]+ ){0,3}?" + _EN_PEOPLE + r"\b"
)
#: At most this many counts of a text are weighed: the first ones (a report gives its count
#: early), and a hostile text of thousands of numbers costs no more than a long report.
MAX_COUNTS = 50
#: After a digit not preceded by a digit, point or comma (a pattern that starts with a class
#: is looked for by scanning for the class, several times faster than trying it everywhere).
_KO = re.compile(
    # a number in pieces, each unit scaling its digits: 60, 2천, 1천200, 3만4천, 1만 2천
    r"(?P<n>\d(?<![\d.,]\d)[\d,]*(?:\s?[만천백](?:\s?\d[\d,]*)?)*)"
    r"\s?(?P<more>여)?\s?(?:명|인)(?!\w*(?:년|월))"
)
#: An audience counted in people (구독자 72만7000명: subscribers) is no count of escapees.
_KO_AUDIENCE = re.compile(
    r"(?:구독자|팔로워|조회수|시청자|관객|관람객|방문자|가입자)\s?(?:수\s?)?(?:[가는이은도만]\s?)?$"
)
_ZH_AUDIENCE = re.compile(
    r"(?:订阅者?|訂閱者?|粉丝|粉絲|关注者|觀眾|观众|登録者|フォロワー|視聴者)\s?(?:数\s?)?$"
)
_ZH_NUM = "零〇一二两兩三四五六七八九十百千万萬"
_ZH = _starting(
    r"逾超约近\d" + _ZH_NUM,
    # digits not inside a decimal (1.37名 is no count; a comma is also 、's and ，'s NFKC
    # form, so it may precede a count) and numerals from their first: not from the middle of
    # one (二十名 is no 十名), not after 几 or 数 ("数十名", "几百人": some tens, some hundreds,
    # no stated number), except the 数 of 人数 (the number of people: 人数二十名 is 20)
    r"(?:逾|超过|约|近)?(?P<n>\d(?<![\d.]\d)[\d,]*(?:[万萬千百][\d,]*)*"
    r"|(?<![几幾" + _ZH_NUM + r"])(?<!(?<!人)[数數])[" + _ZH_NUM + r"]+)"
    r"\s?(?P<more>多|余|餘)?\s?(?:名|人)",
)

#: Words that make a stated count approximate ("about 600", 600여 명, 约500名, 約600人, "more
#: than 600"): the number stays what grouping and severity weigh, and the hedge is shown with
#: it ("~600 people"), as the outlet gave it. Before the number (in the few characters up to
#: it), and after the count (the number, or its people word, for Korean, Chinese and Japanese).
_HEDGE_BEFORE = re.compile(
    # "handed over 60 north koreans" hands over exactly 60
    r"(?:\b(?:about|around|some|roughly|approximately|approx\.?|nearly|almost|more than|"
    r"(?<!hand )(?<!hands )(?<!handed )(?<!handing )(?<!turned )(?<!turns )(?<!turning )"
    r"(?<!passed )(?<!taken )(?<!took )over|at least|up to|as many as|close to|upwards of|"
    r"estimated) "
    r"|(?<!\w)(?:약|대략|최소|최대|적어도|거의)\s?"
    # (not the 近 of 最近, recently, or of 附近, nearby: "最近3名脱北者被捕" is three)
    r"|(?:约|約|大约|大約|(?<![最附])近|将近|將近|逾|超过|超過|至少|多达|多達|约有|约为)\s?)$"
)
_HEDGE_AFTER_NUMBER = re.compile(r" (?:odd|or so|or more|plus)\b")
_HEDGE_AFTER_COUNT = re.compile(
    r"\s?(?:가량|정도|안팎|내외|이상|남짓|넘게|이 넘는|이 넘게|쯤"
    r"|左右|上下|以上|余り|あまり|ほど|程度|前後"
    # 超 and 強 ("600人強", a little over 600) only on their own: 600人強制送還 is exactly
    # 600 forcibly returned, 3人強行越境 three who forced a crossing
    r"|(?:超|強)(?![\u3400-\u9fff]))"
)
#: How far before a number its hedge is looked for.
_HEDGE_REACH = 16
#: What makes a numeral part of a longer one: "1600", "1,600", "600,000", "600.5".
_NUMERAL_BEFORE = re.compile(r"(?:\d[,.]?)$")
_NUMERAL_AFTER = re.compile(r"[,.]?\d")


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
    """Chinese numerals and digits up to the hundred millions: 九 → 9, 六百 → 600, 两千 → 2000,
    百 → 100, 1万2000 → 12000, 1万2千 → 12000, 兩百 → 200."""
    text = text.replace(",", "")
    if text.isdigit():
        return int(text)
    big = section = current = 0  # above 万, below it, and the digits not yet scaled
    for piece in _ZH_PIECES.findall(text):
        if piece.isascii():
            current = int(piece)
        elif piece in _ZH_DIGITS:
            current = _ZH_DIGITS[piece]
        elif piece in _ZH_UNITS:
            section += (current or 1) * _ZH_UNITS[piece]
            current = 0
        elif piece in "万萬":
            big += ((section + current) or 1) * 10000
            section = current = 0
        else:
            return None
    return big + section + current or None


_ZH_PIECES = re.compile(r"[0-9]+|.")
_ZH_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2, "兩": 2}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}


def _ko_int(text: str) -> int | None:
    """A Korean count in pieces: 60 → 60, 2천 → 2000, 1천200 → 1200, 3만4천 → 34000."""
    text = text.replace(",", "").replace(" ", "")
    if text.isdigit():
        return int(text)
    big = section = current = 0
    for piece in _ZH_PIECES.findall(text):
        if piece.isdigit():
            current = int(piece)
        elif piece == "만":
            big += ((section + current) or 1) * 10000
            section = current = 0
        else:
            section += (current or 1) * (1000 if piece == "천" else 100)
            current = 0
    return big + section + current or None


#: A larger "number of people" is a figure of something else (money, a phone number, a
#: hostile headline): no count of escapees comes near it.
MAX_PEOPLE = 1_000_000


#: Words that make a count the whole group's: "a group of five", "a total of 10", "10
#: defectors in total", 총 7명, 모두 7명, 일행 7명, 共41名, 一行9人, 計9人. A report often names a
#: part first ("two women were dragged out... the two were among a group of five").
_TOTAL_BEFORE = re.compile(
    r"(?:\bgroup of|\btotal of|총|모두|일행|전체|共|一共|总共|總共|一行|計|合計|合わせて)\s?$"
)
_TOTAL_AFTER = re.compile(r" (?:in total|in all|altogether)\b")


_MONTH_NAMES = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
)
#: An English clause that dates what it counts to an earlier year or month ("some 200 sent
#: back last October", "600 in October last year", "a year ago"): the count is an earlier
#: wave a report recalls, not its event. Relative words only: an absolute year ("in 2023") is
#: the event in a report of that year, and a verdict never depends on the publication date.
_EARLIER = re.compile(
    r"\b(?:last year|a year ago|years ago|the previous year|the year before"
    r"|last (?:" + _MONTH_NAMES + r")|(?:" + _MONTH_NAMES + r") (?:of )?last year)\b"
)


_CLAUSE_ENDS = (". ", "; ", TITLE_END)


def _counts_people(norm: str, verb: int, n: int, written: str) -> bool:
    """Whether the number a "rise to N" at `verb` gives counts people: the subject of its
    sentence names them (or "the number of … defectors"), and no measure stands between them
    and the verb (a price, a rate, launches). A year-like number counts only with "the number
    of …" ("rose to 2000"), never after a subject alone ("… rose to 2023")."""
    lo = _clause_start(norm, verb, max(0, verb - _RISEN_SUBJECT))
    if _NUMBER_OF.search(norm, lo, verb):
        return True
    if 1900 <= n <= 2100 and "," not in written:
        return False
    people_end = max((m.end() for m in _EN_PEOPLE_WORD.finditer(norm, lo, verb)), default=-1)
    return people_end >= 0 and not _MEASURE.search(norm, people_end, verb)


#: Substrings every phrase of `_EARLIER`, and every verb of `_EN_RISEN`, contains.
_EARLIER_WORDS = ("last", "ago", "previous", "year before")
_RISEN_STEMS = (
    *("ris", "rose", "climb", "increase", "grow", "grew", "jump", "swell", "reach"),
    *("number", "total"),
)


def _clause_start(norm: str, at: int, lowest: int = 0) -> int:
    """Where the sentence or clause holding `at` starts: after the nearest ". ", "; " or title
    end before it, looking no further back than `lowest`."""
    return max(lowest, *(norm.rfind(mark, lowest, at) + 1 for mark in _CLAUSE_ENDS))


def _clause(norm: str, start: int, end: int) -> str:
    """The sentence or clause around norm[start:end]: from the nearest ". ", "; " or title end
    before it to the nearest after it."""
    ends = [i for i in (norm.find(mark, end) for mark in _CLAUSE_ENDS) if i != -1]
    return norm[_clause_start(norm, start) : min(ends, default=len(norm))]


@dataclass(frozen=True, slots=True)
class Count:
    """A stated number of people, and whether the source gave it as approximate."""

    #: The number as stated ("about 600" is 600): what grouping and severity weigh.
    n: int
    #: The source hedged it: "about 600", "more than 600", 600여 명, 约500名, 約600人.
    approximate: bool = False


def _hedged(norm: str, m: re.Match[str], after_number: bool = False) -> bool:
    """Whether the count `m` matched (its number the group "n") is given as approximate: a
    hedge just before the number, or just after it (English) or the count (CJK)."""
    start = m.start("n")
    if _HEDGE_BEFORE.search(norm, max(0, start - _HEDGE_REACH), start):
        return True
    if after_number:
        return _HEDGE_AFTER_NUMBER.match(norm, m.end("n")) is not None
    return _HEDGE_AFTER_COUNT.match(norm, m.end()) is not None


def people(norm: str, lang: str | None = None) -> int | None:
    """The stated number of people (`count` without its hedge)."""
    found = count(norm, lang)
    return None if found is None else found.n


def count(norm: str, lang: str | None = None) -> Count | None:
    """The stated number of people: the headline's; else the first one the text marks as the
    whole group's ("a group of five", "10 defectors in total", 총 7명, 共41名); else the first
    one. None when only vague words are used. Approximate when the source hedged that number
    anywhere in the report: a headline's bare "600" is the body's "about 600" rounded off by
    the outlet, not a more exact count.

    `lang` only saves time: the patterns of other scripts are skipped when it is given."""
    found: list[tuple[int, int, int, bool]] = []  # (start, end, number, approximate)
    latin = lang not in ("ko", "zh", "ja")
    if latin or lang is None:
        for m in _EN.finditer(norm):
            n = _to_int(m.group("n"))
            if n and not (1900 <= n <= 2100 and "," not in m.group("n")):
                found.append((m.start(), m.end(), n, _hedged(norm, m, after_number=True)))
        if "family of" in norm:
            for m in _EN_FAMILY.finditer(norm):
                n = _to_int(m.group("n"))
                if n:
                    found.append((m.start(), m.end(), n, False))
        # (the verbs' stems, looked for first: a substring test costs less than a regex pass)
        if any(stem in norm for stem in _RISEN_STEMS):
            for m in itertools.islice(_EN_RISEN.finditer(norm), MAX_COUNTS):
                n = _to_int(m.group("n"))
                if n and _counts_people(norm, m.start(), n, m.group("n")):
                    found.append((m.start("n"), m.end(), n, _hedged(norm, m, after_number=True)))
    if lang in ("ko", None) and ("명" in norm or "인" in norm):
        for m in _KO.finditer(norm):
            n = _ko_int(m.group("n"))
            if n and not _KO_AUDIENCE.search(norm, max(0, m.start() - 12), m.start()):
                approximate = m.group("more") is not None or _hedged(norm, m)
                found.append((m.start(), m.end(), n, approximate))
    if lang in ("zh", "ja", None) and ("名" in norm or "人" in norm):
        for m in _ZH.finditer(norm):
            n = _zh_int(m.group("n"))
            if n and not _ZH_AUDIENCE.search(norm, max(0, m.start() - 8), m.start()):
                approximate = m.group("more") is not None or _hedged(norm, m)
                found.append((m.start(), m.end(), n, approximate))
    found = sorted(f for f in found if f[2] <= MAX_PEOPLE)[:MAX_COUNTS]
    if not found:
        return None
    hedged = {f[2] for f in found if f[3]}
    chosen = _chosen(norm, found, latin)
    if chosen is None:
        return None
    return Count(n=chosen, approximate=chosen in hedged or _hedged_numeral(norm, chosen))


def _hedged_numeral(norm: str, n: int) -> bool:
    """Whether the numeral `n` ("600", "2,000") is hedged somewhere in `norm` though no count
    pattern took it there: "... after about 600 were sent back" names no people after it."""
    for numeral in {str(n), f"{n:,}"}:
        at = norm.find(numeral)
        while at != -1:
            end = at + len(numeral)
            alone = not _NUMERAL_BEFORE.search(norm, max(0, at - 2), at) and not (
                _NUMERAL_AFTER.match(norm, end)
            )
            if alone and (
                _HEDGE_BEFORE.search(norm, max(0, at - _HEDGE_REACH), at)
                or _HEDGE_AFTER_NUMBER.match(norm, end)
                or _HEDGE_AFTER_COUNT.match(norm, end)
            ):
                return True
            at = norm.find(numeral, end)
    return False


def _chosen(norm: str, found: list[tuple[int, int, int, bool]], latin: bool) -> int | None:
    """`count`'s choice among the counts found (in order): the number only."""
    title_end = norm.find(TITLE_END)
    if 0 <= found[0][0] < title_end:
        return found[0][2]  # the headline's is the report's
    # an earlier wave the text recalls is not the report's count (each phrase of `_EARLIER`
    # holds one of `_EARLIER_WORDS`: most texts have none, and skip the clause checks)
    if latin and any(word in norm for word in _EARLIER_WORDS):
        found = [f for f in found if not _EARLIER.search(_clause(norm, f[0], f[1]))]
        if not found:
            return None
    for start, end, n, _approximate in found:
        if _TOTAL_BEFORE.search(norm, max(0, start - 10), start) or _TOTAL_AFTER.match(norm, end):
            return n
    return found[0][2]


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
_EN_DATE = _starting(
    "".join(sorted({month[0] for month in _MONTHS})),
    r"\b(?P<m>" + _MONTH + r")\.? (?P<d>\d{1,2})(?:st|nd|rd|th)?\b(?:,? (?P<y>(?:19|20)\d\d))?",
)
#: It starts with a class, so it is looked for by scanning for the class; the word boundary
#: before the first digit is checked after it, `(?<!\w.)` (no word character before it).
_EN_DATE_DMY = re.compile(
    r"(?P<d>\d(?<!\w.)\d?) (?P<m>" + _MONTH + r")\b\.?(?: (?P<y>(?:19|20)\d\d))?"
)
_HAS_DIGIT = re.compile(r"\d")
_CJK_DATE = _starting(
    r"\d",
    r"(?:(?P<y>(?:19|20)\d\d)\s?[년年]\s?)?(?P<m>\d{1,2})\s?[월月]\s?(?P<d>\d{1,2})\s?[일日]",
)


#: How far after publication a stated month and day may lie (an upcoming hearing) before it is
#: read as last year's: `Dec. 28` in a report of 5 January is the December just past.
_AHEAD = timedelta(days=31)


def _year_of(month: int, day: int, published: date) -> int | None:
    """The year of a month and day stated without one: the latest such date at most a month
    after publication; None when there is no such day (29 February of three common years)."""
    for year in (published.year + 1, published.year, published.year - 1):
        try:
            stated = date(year, month, day)
        except ValueError:
            continue
        if stated <= published + _AHEAD:
            return year
    return None


def _stated(norm: str, published_year: int | None, published: date | None) -> list[tuple[int, str]]:
    """(position, ISO date) of the dates written out: `Oct. 9`, `9 October 2023`, `10월 9일`."""
    out: list[tuple[int, str]] = []
    patterns = [_EN_DATE, _EN_DATE_DMY] if _HAS_DIGIT.search(norm) else []
    if "월" in norm or "月" in norm:
        patterns.append(_CJK_DATE)
    for pattern in patterns:
        for m in pattern.finditer(norm):
            month = m.group("m")
            month_number = _MONTHS[month] if month in _MONTHS else int(month)
            day = int(m.group("d"))
            if m.group("y"):
                year: int | None = int(m.group("y"))
            elif published is not None:
                year = _year_of(month_number, day, published)
                if year is None:
                    continue
            else:
                year = published_year
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
    return out


def written_days(norm: str) -> tuple[str, ...]:
    """The days a normalised text writes out (`Oct. 9`, `9 October 2023`, `10월 9일`), in order
    of mention: `YYYY-MM-DD` where the text gives the year, else `--MM-DD`. Nothing is taken
    from outside the text: no publication or fetch time, no relative dates ("on Tuesday")."""
    return tuple(dict.fromkeys(t for _, t in sorted(_stated(norm, None, None))))


# Relative dates ("on Tuesday", 지난 3일, 上周, 先月) are found in two steps. A compiled pattern per
# language finds the few candidate spans in a matched item's text, in microseconds (dateparser's
# own whole-text search takes ~4.5 ms for a 250-character lead); each span is then resolved
# against the publication day. dateparser resolves the phrases it reads correctly (weekdays,
# yesterday, last week and month), given in the form it knows; a bare day of the month it reads
# as "N days ago" (3일, 3日), so that one is plain calendar arithmetic. Nothing resolved may fall
# after publication.

_EN_WEEKDAY = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
#: Korean phrases written with a space (지난 주) end there or take a particle (지난 주에, 이번 달
#: 초): 지난 주민투표 is a past referendum, not last week.
_KO_ENDS = r"(?=$|[^가-힣]|에|엔|은|는|도|말|초|중|부터|까지|의|와|과|보다|쯤)"
#: Words that continue 周 (surroundings, periphery, anniversary, cycle...): 本周期 is no week.
_ZH_NOT_WEEK = r"(?![围边年期刊转岁])"

#: Per language: the characters a span can begin with. The pattern is tried only where one
#: stands: an alternation failing at every position of a text costs ~5x more than a class.
_FIRST = {
    "en": "(?<![a-z0-9])[ltpcnmwfsye]",
    "ko": "[지이다오내월화수목금토일어그0-9]",
    "zh": "[上本这下周星礼前昨0-9]",
    "ja": "[先今来の月火水木金土日一お昨き0-9]",
}
#: Per language: one pattern for all candidate spans. Its groups: `wmod`/`wcore` (a weekday and
#: what qualifies it), `dmod`/`d` (a day of the month and its month), `phrase` (the rest).
_BODIES = {
    "en": (
        r"\b(?:(?P<wmod>last|this past|this coming|past|coming|next|this) )?"
        r"(?P<wcore>" + _EN_WEEKDAY + r")\b(?! times)"
        r"|(?<!the )(?<!later )\b(?P<phrase>the day before yesterday|yesterday|last week"
        r"|last month|earlier this week|this week|earlier this month|this month)\b"
    ),
    "ko": (
        r"(?:(?P<wmod>지난 ?주|이번 ?주|다음 ?주|지난|이번|오는|다음) ?)?"
        r"(?P<wcore>[월화수목금토일]요일)"
        r"|(?:(?P<dmod>지난 ?달|이번 ?달|이달|다음 ?달|내달|지난|오는) ?)?(?<![\d월.~·\-])(?<!월 )"
        r"(?P<d>3[01]|[12]\d|0?[1-9])일(?!\d|간|째|씩|분|치|짜리|여|\s?(?:동안|만에|이내|이상|이하"
        r"|가량|정도|연속|(?:전|후|뒤|내)(?![가-힣])))"
        r"|(?<!엊)(?P<phrase>그저께|그제|어제(?! ?오늘)|지난주|이번주|지난달|이번달|이달"
        r"|(?:지난|이번) [주달]" + _KO_ENDS + r")"
    ),
    "zh": (
        r"(?P<wmod>上个?|本|这个?|下个?)?(?<![一二两三四五六七八九十几每\d])"
        r"(?P<wcore>(?:周|星期|礼拜)[一二三四五六日天])"
        r"|(?:(?P<dmod>上个?月|本月|这个月|下个?月)|(?<![\d月第])(?<!月 ))"
        r"(?P<d>3[01]|[12]\d|0?[1-9])日(?![\d内间前后]|以内|以上)"
        r"|(?<![大基根])(?P<phrase>前天|昨天|昨日|(?:上个?|本|这个?)(?:周|星期|礼拜)"
        + _ZH_NOT_WEEK
        + r"|上个?月(?!球)|本月|这个月)"
    ),
    "ja": (
        r"(?P<wmod>先週|今週|来週)?の?(?<!毎週)(?<!毎)(?P<wcore>[月火水木金土日])曜日?"
        r"|(?:(?P<dmod>先月|今月|来月)|(?<![\d月第])(?<!月 ))"
        r"(?P<d>3[01]|[12]\d|0?[1-9])日(?!\d|間|目|前|後|以内|以上|内|ぶり|連続|あたり|当たり|分|余)"
        r"|(?P<phrase>一昨日|おととい|昨日|きのう|先週|今週|先月|今月)"
    ),
}
_RELATIVE = {lang: re.compile(f"(?={_FIRST[lang]})(?:{body})") for lang, body in _BODIES.items()}

#: What qualifies a weekday (spaces dropped) → which one it is, relative to publication:
#: before (the latest before the publication day), last-week / this-week (in that calendar
#: week, Monday to Sunday), next (ahead: never reported as past). Unqualified: the latest on or
#: before the publication day ("said on Friday" in Friday's report is that day).
_WEEKDAY_FRAMES: dict[str, dict[str, str]] = {
    "en": {
        "last": "before",
        "past": "before",
        "thispast": "before",
        "this": "this-week",
        "next": "next",
        "coming": "next",
        "thiscoming": "next",
    },
    "ko": {
        "지난": "before",
        "지난주": "last-week",
        "이번주": "this-week",
        "이번": "this-week",
        "다음주": "next",
        "다음": "next",
        "오는": "next",
    },
    "zh": {
        "上": "last-week",
        "上个": "last-week",
        "本": "this-week",
        "这": "this-week",
        "这个": "this-week",
        "下": "next",
        "下个": "next",
    },
    "ja": {"先週": "last-week", "今週": "this-week", "来週": "next"},
}
#: What qualifies a day of the month → its month: last-month, this-month, next (ahead). Bare
#: (3일, 3日) or 지난 3일: the latest such day on or before the publication day.
_DAY_FRAMES: dict[str, dict[str, str]] = {
    "ko": {
        "지난": "upto",
        "지난달": "last-month",
        "이번달": "this-month",
        "이달": "this-month",
        "다음달": "next",
        "내달": "next",
        "오는": "next",
    },
    "zh": {
        "上月": "last-month",
        "上个月": "last-month",
        "本月": "this-month",
        "这个月": "this-month",
        "下月": "next",
        "下个月": "next",
    },
    "ja": {"先月": "last-month", "今月": "this-month", "来月": "next"},
}
_ZH_WEEKS = {
    f"{before}{week}": (kind, canonical)
    for befores, kind, canonical in (
        (("上", "上个"), "last-week", "上周"),
        (("本", "这", "这个"), "this-week", "本周"),
    )
    for before in befores
    for week in ("周", "星期", "礼拜")
}
#: A phrase as found (spaces dropped) → (what it names, the words dateparser reads for it in
#: that language). Where dateparser knows no form (그제, 上月, おととい), the one it knows.
_PHRASES: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "thedaybeforeyesterday": ("day", "the day before yesterday"),
        "yesterday": ("day", "yesterday"),
        "lastweek": ("last-week", "last week"),
        "earlierthisweek": ("this-week", "this week"),
        "thisweek": ("this-week", "this week"),
        "lastmonth": ("last-month", "last month"),
        "earlierthismonth": ("this-month", "this month"),
        "thismonth": ("this-month", "this month"),
    },
    "ko": {
        "그저께": ("day", "2일 전"),
        "그제": ("day", "2일 전"),
        "어제": ("day", "어제"),
        "지난주": ("last-week", "지난주"),
        "이번주": ("this-week", "이번 주"),
        "지난달": ("last-month", "지난달"),
        "이번달": ("this-month", "이번 달"),
        "이달": ("this-month", "이번 달"),
    },
    "zh": {
        "前天": ("day", "前天"),
        "昨天": ("day", "昨天"),
        "昨日": ("day", "昨天"),
        **_ZH_WEEKS,
        "上月": ("last-month", "上个月"),
        "上个月": ("last-month", "上个月"),
        "本月": ("this-month", "本月"),
        "这个月": ("this-month", "本月"),
    },
    "ja": {
        "一昨日": ("day", "一昨日"),
        "おととい": ("day", "一昨日"),
        "昨日": ("day", "昨日"),
        "きのう": ("day", "昨日"),
        "先週": ("last-week", "先週"),
        "今週": ("this-week", "今週"),
        "先月": ("last-month", "先月"),
        "今月": ("this-month", "今月"),
    },
}


@lru_cache(maxsize=4096)
def _parse(lang: str, phrase: str, base: date, period: str) -> date | None:
    """The day dateparser gives `phrase` relative to `base` (noon of that day, preferring the
    past), or None unless it reads the phrase as naming a `period` (day, week, month): a
    library's guess at something else is not a date the text states."""
    # Heavy (~0.2 s, ~9 MB with four languages' data): loaded on the first candidate span.
    from dateparser.date import DateDataParser  # type: ignore[import-untyped]

    settings = {
        "RELATIVE_BASE": datetime(base.year, base.month, base.day, 12),
        "PREFER_DATES_FROM": "past",
        "RETURN_TIME_AS_PERIOD": True,
        # Only relative words and written dates: no timestamps, no digit runs read as dates.
        "PARSERS": ["relative-time", "absolute-time"],
        "TIMEZONE": "UTC",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    parser = DateDataParser(languages=[lang], try_previous_locales=False, settings=settings)
    found = parser.get_date_data(phrase)
    if found.date_obj is None or found.period != period:
        return None
    day: date = found.date_obj.date()
    return day


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _weekday(lang: str, modifier: str | None, weekday: str, published: date) -> date | None:
    frame = _WEEKDAY_FRAMES[lang].get(modifier.replace(" ", ""), "") if modifier else "upto"
    # dateparser's past weekday is the latest strictly before its base: the base sets the frame.
    base = {
        "upto": published + timedelta(days=1),
        "before": published,
        "last-week": _monday(published),
        "this-week": _monday(published) + timedelta(days=7),
    }.get(frame)
    if base is None:  # ahead ("next Tuesday", 오는 화요일)
        return None
    if lang == "zh":
        weekday = "周" + weekday[-1].replace("天", "日")
    elif lang == "ja":
        weekday = weekday[0] + "曜日"
    return _parse(lang, weekday, base, "day")


def _day_of_month(lang: str, modifier: str | None, day: int, published: date) -> date | None:
    """3일, 지난 3일, 3日: the latest 3rd on or before publication; 지난달 3일, 先月3日: last
    month's; 이달 3일, 本月3日: this month's (dropped later when it is still ahead)."""
    frame = _DAY_FRAMES[lang].get(modifier.replace(" ", ""), "") if modifier else "upto"
    first = published.replace(day=1)
    if frame == "this-month":
        months = [first]
    elif frame == "last-month":
        months = [(first - timedelta(days=1)).replace(day=1)]
    elif frame == "upto":
        months = [first]
        for _ in range(2):  # the 31st: back past shorter months
            months.append((months[-1] - timedelta(days=1)).replace(day=1))
    else:
        return None
    for month in months:
        try:
            found = month.replace(day=day)
        except ValueError:
            continue
        if frame != "upto" or found <= published:
            return found
    return None


def _phrase(lang: str, found: str, published: date) -> str | None:
    """Yesterday as a day; last week as its Monday-to-Sunday interval; last month as `YYYY-MM`."""
    known = _PHRASES[lang].get(found.replace(" ", ""))
    if known is None:  # pragma: no cover - the pattern finds only phrases of the table
        return None
    kind, words = known
    period = kind.rsplit("-", 1)[-1]
    day = _parse(lang, words, published, period)
    if day is None or day > published:
        return None
    if period == "day":
        return day.isoformat()
    if period == "month":
        return f"{day:%Y-%m}"
    start, end = _monday(day), min(_monday(day) + timedelta(days=6), published)
    return start.isoformat() if start == end else f"{start}/{end}"


def _relative(norm: str, lang: str, published: date) -> list[tuple[int, str]]:
    """(position, ISO date) of the relative dates in the text, resolved against `published`;
    those that would fall after it are dropped."""
    out: list[tuple[int, str]] = []
    for m in _RELATIVE[lang].finditer(norm):
        groups = m.groupdict()
        text: str | None
        if groups.get("wcore"):
            day = _weekday(lang, groups["wmod"], groups["wcore"], published)
            text = day.isoformat() if day is not None and day <= published else None
        elif groups.get("d"):
            day = _day_of_month(lang, groups["dmod"], int(groups["d"]), published)
            text = day.isoformat() if day is not None and day <= published else None
        else:
            text = _phrase(lang, groups["phrase"], published)
        if text is not None:
            out.append((m.start(), text))
    return out


def dates(
    norm: str,
    published_year: int | None = None,
    *,
    lang: str | None = None,
    published: date | None = None,
) -> tuple[str, ...]:
    """Dates the text states or implies, as ISO dates in order of mention.

    Written-out dates (`Oct. 9`, `10월 9일`) take their year from the text, else from the
    publication: `published_year`, or with `published` (the day the item was published where
    it was written) the latest such date at most a month after it (`--MM-DD` when neither is
    known). With `published` and `lang`, relative dates are resolved against that day too:
    "on Tuesday", 지난 3일 and 昨天 give days (`2026-11-17`), last week a Monday-to-Sunday
    interval (`2026-11-09/2026-11-15`), last month a month (`2026-10`); none after it.

    **Usage**::

        >>> dates("지난 3일 밤 단둥", lang="ko", published=date(2026, 11, 20))
        ('2026-11-03',)
    """
    out = _stated(norm, published_year, published)
    if published is not None and lang in _RELATIVE:
        out += _relative(norm, lang, published)
    return tuple(dict.fromkeys(t for _, t in sorted(out)))


# --------------------------------------------------------------------------- all of it


@dataclass(frozen=True, slots=True)
class Extracted:
    people: int | None = None
    #: The source gave `people` as approximate ("about 600", 600여 명).
    people_approximate: bool = False
    places: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "people": self.people,
            "people_approximate": self.people_approximate,
            "places": list(self.places),
            "dates": list(self.dates),
        }


def extract(
    norm: str,
    *,
    lang: str | None = None,
    published_year: int | None = None,
    published: date | None = None,
) -> Extracted:
    """People, places and dates of a matched item; `published` is its publication day where it
    was written (relative dates are resolved against it)."""
    stated = count(norm, lang)
    return Extracted(
        people=None if stated is None else stated.n,
        people_approximate=stated is not None and stated.approximate,
        places=places(norm),
        dates=dates(norm, published_year, lang=lang, published=published),
    )
