"""The value sets the simulated writers draw from (DATA.md §1.2, §2, §3).

Kept apart from the writers so a reader sees every role, status source and error text the demo
can produce in one place, and a test can compare them with DATA.md.
"""

from __future__ import annotations

PORTAL_ROLES = (
    "retail", "wholesale_level1", "wholesale_level2", "wholesale_level3", "wholesale_level4",
    "trainer", "federation_rep",
)
PORTAL_ROLE_WEIGHTS = (60, 12, 6, 3, 2, 10, 7)
B2B_ROLES = PORTAL_ROLES[1:]
IMPORTED_ROLE = "unregistered"
CUSTOMER_TYPES = ("legal_entity", "individual_entrepreneur", "individual")
ROLE_STATS_KEYS = (
    "roles_updated", "roles_updated_from_unregistered", "roles_updated_from_assigned",
    "roles_already_actual", "roles_skipped_unlinked_record", "roles_skipped_no_data",
    "roles_skipped_no_agreement", "roles_skipped_unknown_price_type", "roles_skipped_ambiguous",
)
ROLE_UPDATED = ("roles_updated_from_unregistered", "roles_updated_from_assigned")
SEARCH_METHODS = ("onec_id", "onec_guid", "tax_id", "email")
NOT_BUYER_ROLES = ("Поставщик", "Конкурент", "Прочее", "Перевозчик", "Поставщик, Комиссионер")
BUYER_ROLES = ("Покупатель", "Покупатель", "Покупатель", "покупатель ", "Покупатель, Поставщик")
PROCESSOR_ERRORS = (
    'duplicate key value violates unique constraint "users_email_key"\n'
    "DETAIL:  Key (email)=({email}) already exists.",
    "value too long for type character varying(12)",
    "could not serialize access due to concurrent update",
    "canceling statement due to statement timeout",
    "Company matching query does not exist.",
)
OUTAGE_ERRORS = (
    "HTTPConnectionPool(host='1c.freesport.local', port=80): Max retries exceeded with url: "
    "/base/hs/exchange/contragents (Caused by NewConnectionError: [Errno 111] Connection refused)",
    "HTTPConnectionPool(host='1c.freesport.local', port=80): Read timed out. (read timeout=30)",
    "503 Server Error: Service Unavailable for url: http://1c.freesport.local/base/hs/exchange",
)
NOTIFICATION_ERRORS = (
    "[Errno 111] Connection refused",
    "(451, b'4.7.0 Temporary server error. Please try again later')",
    "Connection unexpectedly closed",
    "timed out",
)
COMPANY_WORDS = (
    "Спорт", "Олимп", "Атлет", "Динамо", "Чемпион", "Старт", "Финиш", "Рекорд", "Арена", "Вектор",
)
LAST_NAMES = ("Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов")
FIRST_NAMES = ("Алексей", "Мария", "Дмитрий", "Ольга", "Сергей", "Анна", "Игорь", "Елена")
EMAIL_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "sport-club.ru", "bk.ru")
COUNTRIES = ("Россия", "Россия", "Россия", "Россия", "Беларусь", "Казахстан")

