"""Fixed multilingual texts for the build's cross-lingual check and the export's validation gate."""

from __future__ import annotations

from encoders.sidecar import E5_PREFIXES

_QUERY, _PASSAGE = E5_PREFIXES["query"], E5_PREFIXES["passage"]

# Eight English sentences on unrelated topics and their translations, in the same order.
PARALLEL: dict[str, tuple[str, ...]] = {
    "en": (
        "The cat is sleeping on the sofa.",
        "I need to buy fresh vegetables at the market.",
        "The train to the airport leaves every twenty minutes.",
        "This horror film was too frightening for the children.",
        "How do I reset my password?",
        "Heavy rain is expected tomorrow in the mountains.",
        "She plays the violin in a symphony orchestra.",
        "The doctor recommended more exercise and less sugar.",
    ),
    "de": (
        "Die Katze schläft auf dem Sofa.",
        "Ich muss auf dem Markt frisches Gemüse kaufen.",
        "Der Zug zum Flughafen fährt alle zwanzig Minuten.",
        "Dieser Horrorfilm war zu gruselig für die Kinder.",
        "Wie setze ich mein Passwort zurück?",
        "Morgen wird in den Bergen starker Regen erwartet.",
        "Sie spielt Geige in einem Sinfonieorchester.",
        "Der Arzt empfahl mehr Bewegung und weniger Zucker.",
    ),
    "es": (
        "El gato está durmiendo en el sofá.",
        "Necesito comprar verduras frescas en el mercado.",
        "El tren al aeropuerto sale cada veinte minutos.",
        "Esta película de terror daba demasiado miedo para los niños.",
        "¿Cómo restablezco mi contraseña?",
        "Mañana se esperan fuertes lluvias en las montañas.",
        "Ella toca el violín en una orquesta sinfónica.",
        "El médico recomendó más ejercicio y menos azúcar.",
    ),
    "fr": (
        "Le chat dort sur le canapé.",
        "Je dois acheter des légumes frais au marché.",
        "Le train pour l'aéroport part toutes les vingt minutes.",
        "Ce film d'horreur était trop effrayant pour les enfants.",
        "Comment réinitialiser mon mot de passe ?",
        "De fortes pluies sont attendues demain en montagne.",
        "Elle joue du violon dans un orchestre symphonique.",
        "Le médecin a recommandé plus d'exercice et moins de sucre.",
    ),
    "zh": (
        "猫正在沙发上睡觉。",
        "我需要在市场上买新鲜的蔬菜。",
        "去机场的火车每二十分钟一班。",
        "这部恐怖电影对孩子们来说太吓人了。",
        "如何重置我的密码？",
        "明天山区预计会有大雨。",
        "她在一个交响乐团拉小提琴。",
        "医生建议多运动、少吃糖。",
    ),
    "ja": (
        "猫がソファで寝ています。",
        "市場で新鮮な野菜を買う必要があります。",
        "空港行きの電車は二十分ごとに出発します。",
        "このホラー映画は子供たちには怖すぎた。",
        "パスワードをリセットするにはどうすればいいですか？",
        "明日は山間部で大雨が予想されています。",
        "彼女は交響楽団でバイオリンを弾いています。",
        "医者はもっと運動して砂糖を減らすように勧めた。",
    ),
    "ru": (
        "Кошка спит на диване.",
        "Мне нужно купить свежие овощи на рынке.",
        "Поезд в аэропорт отправляется каждые двадцать минут.",
        "Этот фильм ужасов был слишком страшным для детей.",
        "Как мне сбросить пароль?",
        "Завтра в горах ожидается сильный дождь.",
        "Она играет на скрипке в симфоническом оркестре.",
        "Врач посоветовал больше двигаться и есть меньше сахара.",
    ),
    "it": (
        "Il gatto sta dormendo sul divano.",
        "Devo comprare verdure fresche al mercato.",
        "Il treno per l'aeroporto parte ogni venti minuti.",
        "Questo film horror era troppo spaventoso per i bambini.",
        "Come reimposto la mia password?",
        "Domani sono previste forti piogge in montagna.",
        "Suona il violino in un'orchestra sinfonica.",
        "Il medico ha consigliato più esercizio e meno zucchero.",
    ),
}

_LONG = " ".join(" ".join(sentences) for sentences in PARALLEL.values())

# Short and long texts in several scripts; the last one runs past 512 tokens, so it is truncated.
VALIDATION: tuple[str, ...] = (
    _PASSAGE + "Toy Story (1995) Animation Children's Comedy",
    _PASSAGE + "Mitt liv som hund (1985) Drama",
    _QUERY + "猫",
    _QUERY + "Как мне сбросить пароль?",
    _PASSAGE + "東京の天気は明日晴れるでしょう。",
    _PASSAGE + "كيف يمكنني إعادة تعيين كلمة المرور الخاصة بي؟",
    _PASSAGE + "मुझे बाज़ार से ताज़ी सब्ज़ियाँ खरीदनी हैं।",
    _PASSAGE + "이 공포 영화는 아이들에게 너무 무서웠다.",
    _PASSAGE + " ".join(PARALLEL["de"]),
    _PASSAGE + _LONG * 3,
)
