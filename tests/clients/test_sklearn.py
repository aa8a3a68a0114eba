"""scikit-learn with n_jobs=2: its loky backend and joblib's multiprocessing backend."""


def test_cross_val_score_and_grid_search(client_program):
    client_program('''
        from sklearn.datasets import load_iris
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.model_selection import GridSearchCV, cross_val_score
        from sklearn.svm import SVC

        if __name__ == '__main__':
            X, y = load_iris(return_X_y=True)
            forest = RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=2)
            scores = cross_val_score(forest, X, y, cv=3, n_jobs=2)
            print('cross_val_score', [round(float(s), 6) for s in scores])
            grid = GridSearchCV(SVC(), {'C': [0.1, 1, 10], 'kernel': ['linear', 'rbf']}, cv=3, n_jobs=2)
            grid.fit(X, y)
            print('grid', sorted(grid.best_params_.items()), round(float(grid.best_score_), 6))
            print('ranks', list(grid.cv_results_['rank_test_score']))
    ''')


def test_multiprocessing_backend(client_program):
    client_program('''
        from joblib import parallel_backend
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.model_selection import cross_val_score

        if __name__ == '__main__':
            X, y = make_classification(n_samples=300, n_features=8, random_state=1)
            with parallel_backend('multiprocessing', n_jobs=2):
                forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
                scores = cross_val_score(forest, X, y, cv=3)
            print('trees', len(forest.estimators_), 'score', round(float(forest.score(X, y)), 6))
            print('cross_val_score', [round(float(s), 6) for s in scores])
    ''')
